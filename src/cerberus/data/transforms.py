"""Image transforms: resize, flip, pad + crop, random erasing (method §4.2), and a camera look
for training on synthetic people (:class:`CameraLook`, not in the method)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch
from PIL import Image, ImageFilter
from torchvision import transforms as T

from cerberus.config import CameraLookConfig, DataConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _uniform(low: float, high: float) -> float:
    """One draw from U(low, high) off torch's generator (seeded per DataLoader worker)."""
    return float(torch.empty(()).uniform_(low, high)) if high > low else float(low)


@dataclass(frozen=True)
class CameraLook(CameraLookConfig):
    """Make a clean (synthetic) crop look like a real low-resolution CCTV crop, keeping its
    colour names: a PIL RGB image -> a PIL RGB image of the same size.

    Colour, per image, on x in [0, 255] (every factor drawn uniformly, 0 turns a step off; no
    hue rotation, so a blue stays blue):
    brightness x *= b, b in [1 - brightness, 1 + brightness]; contrast x = m + c (x - m), m the
    image's mean grey level, c in [1 - contrast, 1 + contrast]; saturation x = L + s (x - L),
    L the pixel's luma (0.299 R + 0.587 G + 0.114 B), s in [1 - saturation, 1 + saturation];
    gamma x = 255 (x / 255) ** g, log g in [-gamma, gamma]; colour cast per channel
    x_ch *= a_ch, a_ch in [1 - cast, 1 + cast]; clipped to [0, 255].
    Detail: with probability ``low_res`` the image is scaled down to a width drawn from
    ``low_res_width`` (pixels, aspect kept) and back up (bilinear); a Gaussian blur of sigma in
    [0, blur] pixels; Gaussian noise of sd in [0, noise] grey levels; a JPEG round trip at a
    quality in [jpeg_quality, 95] (0: none). The fields are
    :class:`~cerberus.config.CameraLookConfig`'s.
    """

    @property
    def active(self) -> bool:
        """Whether any step is on (an inactive look is left out of the transform)."""
        colour = (self.brightness, self.contrast, self.saturation, self.gamma, self.cast)
        return any(v > 0 for v in (*colour, self.low_res, self.blur, self.noise)) or (
            self.jpeg_quality > 0
        )

    def colour(self, x: np.ndarray) -> np.ndarray:
        """The colour steps on a float array ``(H, W, 3)`` in [0, 255]; returns a new one."""
        x = x * _uniform(1 - self.brightness, 1 + self.brightness)
        m = float(x.mean())
        x = m + _uniform(1 - self.contrast, 1 + self.contrast) * (x - m)
        luma = x @ np.array([0.299, 0.587, 0.114])
        x = luma[..., None] + _uniform(1 - self.saturation, 1 + self.saturation) * (
            x - luma[..., None]
        )
        x = np.clip(x, 0, 255)
        x = 255.0 * (x / 255.0) ** math.exp(_uniform(-self.gamma, self.gamma))
        cast = np.array([_uniform(1 - self.cast, 1 + self.cast) for _ in range(3)])
        return np.clip(x * cast, 0, 255)

    def __call__(self, image: Image.Image) -> Image.Image:
        image = image.convert("RGB")
        w, h = image.size
        x = self.colour(np.asarray(image, dtype=np.float64))
        image = Image.fromarray(np.round(x).astype(np.uint8))
        if self.low_res > 0 and _uniform(0, 1) < self.low_res:
            lo, hi = self.low_res_width
            small_w = min(w, int(round(_uniform(lo, hi))))
            small_h = max(1, round(h * small_w / w))
            image = image.resize((small_w, small_h), Image.BILINEAR).resize((w, h), Image.BILINEAR)
        if self.blur > 0:
            image = image.filter(ImageFilter.GaussianBlur(_uniform(0, self.blur)))
        if self.noise > 0:
            sd = _uniform(0, self.noise)
            noise = torch.randn(h, w, 3).numpy() * sd
            x = np.asarray(image, dtype=np.float64) + noise
            image = Image.fromarray(np.round(np.clip(x, 0, 255)).astype(np.uint8))
        if self.jpeg_quality > 0:
            buf = io.BytesIO()
            image.save(buf, format="JPEG", quality=int(round(_uniform(self.jpeg_quality, 95))))
            buf.seek(0)
            image = Image.open(buf).convert("RGB")
        return image


def camera_look(data: DataConfig) -> CameraLook:
    """The :class:`CameraLook` a data config asks for (inactive where all its fields are 0):
    each of the look's fields is read from the data config field of the same name."""
    values = {f.name: getattr(data, f.name) for f in fields(CameraLookConfig)}
    values["low_res_width"] = tuple(values["low_res_width"])
    return CameraLook(**values)


def build_transforms(
    *,
    height: int,
    width: int,
    train: bool,
    flip: bool = True,
    pad: int = 0,
    random_erasing: float = 0.5,
    look: CameraLook | None = None,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> Callable[[Image.Image], torch.Tensor]:
    """The train or test transform, a PIL image -> a normalised tensor of shape (3, H, W).

    Train: the camera ``look`` if given and active (on the image as stored, before resizing),
    resize, random horizontal flip, optionally pad ``pad`` pixels and random crop back
    (the torchreid / fast-reid convention, not in method §4; 0, the default, turns it off), to
    tensor, normalise, random erasing with probability ``random_erasing`` (0 turns it off).
    Test: resize, to tensor, normalise (no look: inference sees the pixels as they are).
    """
    ops: list[Callable] = []
    if train and look is not None and look.active:
        ops.append(look)
    ops.append(T.Resize((height, width), interpolation=T.InterpolationMode.BICUBIC))
    if train:
        if flip:
            ops.append(T.RandomHorizontalFlip())
        if pad > 0:
            ops += [T.Pad(pad), T.RandomCrop((height, width))]
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    if train and random_erasing > 0:
        ops.append(T.RandomErasing(p=random_erasing, value=0))
    return T.Compose(ops)
