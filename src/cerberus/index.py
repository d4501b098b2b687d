"""Gallery features: batched extraction of the five part representations (SPEC section 5)."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from cerberus.data.datasets import ImageDataset, ImageSet
from cerberus.data.transforms import build_transforms


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images: ImageSet,
    *,
    height: int,
    width: int,
    batch_size: int = 128,
    num_workers: int = 2,
    device: str | torch.device = "cpu",
    flip: bool = False,
    progress: bool = False,
    desc: str = "extract",
) -> np.ndarray:
    """The five representations f^H, f^U, f^L, f^I, f^C of every image.

    Args:
        model: a :class:`~cerberus.model.Cerberus` (put in eval mode here).
        images: the images to embed.
        height, width: network input size.
        flip: also embed the mirrored image and average (a common test-time option; off in
            the paper protocol).

    Returns:
        Array of shape ``(N, 5, d)``, float32, not normalised.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(
        ImageDataset(images, build_transforms(height=height, width=width, train=False)),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    )
    out = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(images), desc=desc, unit="img")
    try:
        for batch in loader:
            x = batch["image"].to(device, non_blocking=True)
            with amp:
                f = model(x)["features"].float()
                if flip:
                    f = (f + model(torch.flip(x, dims=[3]))["features"].float()) / 2
            out.append(f.cpu())
            if bar is not None:
                bar.update(len(x))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    if not out:
        return np.zeros((0, 5, 0), dtype=np.float32)
    return torch.cat(out).numpy()
