"""Batched preprocessing: decoded RGB photos -> one normalised NCHW float32 array.

Each backbone declares the transform it was trained with as a ``PreprocessSpec``:

* EfficientNet-Lite (Google's TF reference eval): shorter side to ``size / crop_pct`` with bicubic
  resampling, centre crop ``size``, then ``x / 127.5 - 1`` (mean = std = 127.5 in 0..255 units).
  ``crop_pct`` is ``size / (size + 32)``: 224/256 = 0.875 for lite0, 260/292 for lite2.
* The article / ModelScope 万物识别 (ResNeSt-101, torchvision ResNet-50): ``Resize(256)`` bilinear,
  ``CenterCrop(224)``, ImageNet mean/std.

The resize and the crop are done in one PIL call per image (``Image.resize(box=...)`` samples
only the crop window: torchvision's pixels without the full-size intermediate); the normalisation and the HWC->CHW
transpose are one vectorised numpy operation over the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}


@dataclass(frozen=True)
class PreprocessSpec:
    size: int = 224
    """Side of the square network input."""
    resize_shorter: int = 256
    """The shorter side is resized to this before the centre crop of ``size``."""
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    """Per-channel mean in 0..255 units."""
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    """Per-channel std in 0..255 units."""

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, got {self.interpolation!r}")
        if self.resize_shorter < self.size:
            raise ValueError("resize_shorter must be at least size")

    @classmethod
    def tf_efficientnet(cls, size: int) -> "PreprocessSpec":
        """Google's EfficientNet eval transform: crop_pct = size / (size + 32), bicubic, x/127.5 - 1."""
        return cls(size=size, resize_shorter=size + 32, interpolation="bicubic")

    @classmethod
    def imagenet(cls, size: int = 224, resize_shorter: int = 256) -> "PreprocessSpec":
        """torchvision's classic Resize(256) + CenterCrop(224) + ImageNet mean/std (bilinear)."""
        return cls(
            size=size,
            resize_shorter=resize_shorter,
            interpolation="bilinear",
            mean=tuple(255.0 * m for m in IMAGENET_MEAN),
            std=tuple(255.0 * s for s in IMAGENET_STD),
        )

    def describe(self) -> str:
        return (
            f"shorter side {self.resize_shorter} ({self.interpolation}), centre crop {self.size}, "
            f"mean {tuple(round(m, 3) for m in self.mean)} std {tuple(round(s, 3) for s in self.std)} (0..255 units)"
        )


def resize_crop(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Shorter side to ``spec.resize_shorter``, centre crop ``spec.size`` -> HxWx3 uint8 array.

    Same geometry as torchvision's ``Resize(resize_shorter)`` + ``CenterCrop(size)`` (integer resized
    size, rounded crop offset), but PIL resamples only the crop window: the output pixels are those
    of the full resize, without computing the ones the crop throws away.
    """
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    resized_long = int(spec.resize_shorter * long / short)
    new_w, new_h = (spec.resize_shorter, resized_long) if width <= height else (resized_long, spec.resize_shorter)
    left = int(round((new_w - spec.size) / 2.0))
    top = int(round((new_h - spec.size) / 2.0))
    scale_x, scale_y = width / new_w, height / new_h
    out = image.resize(
        (spec.size, spec.size),
        resample=_RESAMPLE[spec.interpolation],
        box=(left * scale_x, top * scale_y, (left + spec.size) * scale_x, (top + spec.size) * scale_y),
    )
    return np.asarray(out, dtype=np.uint8)


def normalize_batch(crops: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """NxHxWx3 uint8 -> Nx3xHxW float32, normalised with the spec's mean/std in one pass."""
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"expected an NxHxWx3 batch, got shape {crops.shape}")
    mean = np.asarray(spec.mean, dtype=np.float32)
    inv_std = 1.0 / np.asarray(spec.std, dtype=np.float32)
    batch = (crops.astype(np.float32) - mean) * inv_std
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def preprocess_images(images: list[Image.Image], spec: PreprocessSpec) -> np.ndarray:
    """A list of RGB PIL images -> the network's Nx3xSxS float32 input."""
    if not images:
        return np.zeros((0, 3, spec.size, spec.size), dtype=np.float32)
    return normalize_batch(np.stack([resize_crop(image, spec) for image in images]), spec)
