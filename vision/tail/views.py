"""Where a tail's frozen part ends (``Cut``), the deterministic views of a photo, and view seeds.

numpy and PIL only: serving imports this. The random training views (``aug0``, ``aug1``, ...) are made
in ``skutag.vision.tail.train``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..preprocess import PreprocessSpec, resize_crop


@dataclass(frozen=True)
class Cut:
    """Where the frozen part ends: after block ``block`` of stage ``stage`` (timm ``blocks[stage][block]``)."""

    stage: int
    block: int

    @classmethod
    def parse(cls, text: str) -> "Cut":
        try:
            stage, block = (int(part) for part in str(text).split("."))
        except ValueError:
            raise ValueError(f"cut must look like 'STAGE.BLOCK' (e.g. '5.1'), got {text!r}") from None
        return cls(stage, block)

    def check(self, model) -> None:
        if not (0 <= self.stage < len(model.blocks) and 0 <= self.block < len(model.blocks[self.stage])):
            sizes = [len(stage) for stage in model.blocks]
            raise ValueError(f"cut {self.stage}.{self.block} is not a block of this network (blocks per stage {sizes})")


DEFAULT_CUTS: dict[str, str] = {"efficientnet-lite0": "5.1", "efficientnet-lite2": "5.2"}
"""Where the frozen part ends by default, per backbone (chosen on GroceryStore, bench_vision_adapt)."""


def default_cut(backbone: str) -> str:
    try:
        return DEFAULT_CUTS[backbone]
    except KeyError:
        raise ValueError(f"tail fine-tuning needs an EfficientNet backbone ({', '.join(DEFAULT_CUTS)}); "
                         f"{backbone!r} is not one: turn vision.tail off or set vision.tail_cut for your "
                         "own timm EfficientNet weights") from None


# ---------------------------------------------------------------- views of a photo

def _center(image, spec: PreprocessSpec, seed: int) -> np.ndarray:
    return resize_crop(image, spec)


def _flip(image, spec: PreprocessSpec, seed: int) -> np.ndarray:
    return np.ascontiguousarray(resize_crop(image, spec)[:, ::-1])


def _full(image, spec: PreprocessSpec, seed: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(image.resize((spec.size, spec.size), Image.Resampling.BICUBIC), dtype=np.uint8)


VIEWS: dict[str, Callable] = {"center": _center, "flip": _flip, "full": _full}
"""Deterministic views (what serving embeds); ``aug<N>`` (aug0, aug1, ...) are random training views,
each seeded by its name and photo (``skutag.vision.tail.train.view_crop``)."""


def is_random_view(view: str) -> bool:
    return view.startswith("aug") and view[3:].isdigit()


def view_crop(image, view: str, spec: PreprocessSpec, seed: int = 0) -> np.ndarray:
    """One deterministic view of a decoded RGB photo as an SxSx3 uint8 array."""
    if view in VIEWS:
        return VIEWS[view](image, spec, seed)
    if is_random_view(view):
        raise ValueError(f"{view!r} is a random training view: skutag.vision.tail.train.view_crop makes it")
    raise ValueError(f"unknown view {view!r}: one of {', '.join(VIEWS)} or aug0, aug1, ...")


def key_seed(view: str, key: str, seed: int) -> int:
    """The random view ``view`` of the photo named ``key`` (e.g. its content hash): the same whatever
    batch or position the photo comes in, so activations can be cached per photo."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{view}:{key}".encode()).digest()[:4], "little")


def row_seed(view: str, row: int, seed: int) -> int:
    """The random view ``view`` of the ``row``-th photo of a call."""
    view_seed = sum(ord(c) * 131 ** k for k, c in enumerate(view)) % 100_000
    return seed * 1_000_003 + view_seed * 10_007 + row


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Each row divided by its Euclidean norm (rows of zeros stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
