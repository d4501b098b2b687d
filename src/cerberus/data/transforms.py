"""Image transforms: resize, flip, pad + crop, random erasing (method §4.2)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_transforms(
    *,
    height: int,
    width: int,
    train: bool,
    flip: bool = True,
    pad: int = 0,
    random_erasing: float = 0.5,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> Callable[[Image.Image], torch.Tensor]:
    """The train or test transform, a PIL image -> a normalised tensor of shape (3, H, W).

    Train: resize, random horizontal flip, optionally pad ``pad`` pixels and random crop back
    (the torchreid / fast-reid convention, not in method §4; 0, the default, turns it off), to
    tensor, normalise, random erasing with probability ``random_erasing`` (0 turns it off).
    Test: resize, to tensor, normalise.
    """
    ops: list[Callable] = [T.Resize((height, width), interpolation=T.InterpolationMode.BICUBIC)]
    if train:
        if flip:
            ops.append(T.RandomHorizontalFlip())
        if pad > 0:
            ops += [T.Pad(pad), T.RandomCrop((height, width))]
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    if train and random_erasing > 0:
        ops.append(T.RandomErasing(p=random_erasing, value=0))
    return T.Compose(ops)
