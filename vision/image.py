"""Decoding product photos safely: bytes or path -> oriented RGB (or BGR) array, or a clear error.

Every stage that reads a photo (vision, OCR, the service's duplicate cache) goes through ``decode_bytes``,
through ``load_image`` or a ``vision.photo.Photo`` (decoded once for all the stages that read it), so that bad
input is rejected the same way everywhere:

* non-image bytes, truncated or corrupt files, zero-size images -> ``ImageDecodeError``
* decompression bombs (more pixels than ``max_pixels``) and oversized files -> ``ImageTooLargeError``
* EXIF orientation is applied; grayscale, CMYK, palette, alpha (composited on white)
  and 16-bit images are converted to 8-bit RGB.

Memory follows what the models need, not the file's pixel count: ``max_side`` shrinks a photo right after
decoding, before the copies that orientation and colour conversion make; full-size decodes run under a
process-wide pixel budget (``DECODE_BUDGET``: a large photo waits for room, or ``ImageBusyError`` after
``timeout_s``); and memory freed by a large decode goes back to the operating system.
"""

from __future__ import annotations

import io
import os
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import heap

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]

DEFAULT_MAX_PIXELS = 64_000_000  # ~ 8000 x 8000
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_DECODE_BUDGET = 48_000_000  # pixels decoded at full size at once in one process (one photo at the cap)
LARGE_DECODE = 4_000_000  # pixels: a decode this large hands its freed memory back to the OS afterwards


def decode_side(resize_shorter: int) -> int:
    """The longest side a backbone's photo is decoded at: room for its resize, crop and whole-photo views, and
    no more (a 6300-pixel photo becomes a few hundred pixels anyway)."""
    return max(1024, 4 * int(resize_shorter))


class PixelBudget:
    """Pixels being decoded at full size at once in this process. A photo waits until its pixels fit; one
    photo alone always fits (the pixel cap bounds it), so the budget orders large decodes, never refuses a
    lone one."""

    def __init__(self, max_pixels: int = DEFAULT_DECODE_BUDGET):
        self.max_pixels = int(max_pixels)
        self._used = 0
        self._condition = threading.Condition()

    def resize(self, max_pixels: int) -> None:
        with self._condition:
            self.max_pixels = int(max_pixels)
            self._condition.notify_all()

    @property
    def used(self) -> int:
        return self._used

    @contextmanager
    def hold(self, pixels: int, timeout_s: float | None = None, name: str = "photo"):
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._condition:
            while self._used and self._used + pixels > self.max_pixels:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ImageBusyError(f"{name}: {pixels} pixels to decode and {self._used} being decoded "
                                         f"(budget {self.max_pixels}); try again shortly")
                self._condition.wait(left)
            self._used += pixels
        try:
            yield
        finally:
            with self._condition:
                self._used -= pixels
                self._condition.notify_all()


DECODE_BUDGET = PixelBudget()


class ImageError(ValueError):
    """An input image that cannot be used; the message says why and which image."""


class ImageDecodeError(ImageError):
    """Not an image, an unsupported format, truncated, corrupt or empty."""


class ImageBusyError(ImageError):
    """The process is decoding as many pixels as its budget allows; the same photo later will do."""


class ImageTooLargeError(ImageError):
    """More pixels or bytes than allowed (decompression-bomb protection)."""


@dataclass(frozen=True)
class ImageLimits:
    """``max_pixels``/``max_bytes``: what a photo may be at all; ``wait_s``: how long a large photo may wait for
    the process's decode budget (None: as long as it takes)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    wait_s: float | None = None


def describe_source(source: ImageSource) -> str:
    """A short name for error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def file_problem(path: Path, limits: ImageLimits = ImageLimits()) -> str | None:
    """Why ``path`` is not a photo file to read (missing, a folder, a device or a pipe that would be read forever,
    empty, over the size limit), or None."""
    if not path.exists():
        return "no such image file"
    if path.is_dir():
        return "it is a folder"
    if not path.is_file():
        return "not a regular file (a device or a pipe?)"
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)"
    if size > limits.max_bytes:
        return f"file is {size} bytes, over the {limits.max_bytes}-byte limit"
    return None


def read_bytes(source: str | os.PathLike, limits: ImageLimits = ImageLimits()) -> bytes:
    """Read a file's bytes, refusing what :func:`file_problem` names."""
    path = Path(source)
    problem = file_problem(path, limits)
    if problem is not None:
        too_large = path.is_file() and path.stat().st_size > limits.max_bytes
        raise (ImageTooLargeError if too_large else ImageDecodeError)(f"{path}: {problem}")
    return path.read_bytes()


def load_image(source: ImageSource, limits: ImageLimits = ImageLimits(), *, min_side: int | None = None,
               max_side: int | None = None) -> Image.Image:
    """Decode ``source`` into an oriented 8-bit RGB PIL image or raise an ``ImageError``.

    ``min_side``: for callers that shrink the photo anyway (the vision backbones), JPEGs are decoded
    at a reduced scale (libjpeg DCT scaling: 1/2, 1/4, 1/8) as long as both sides stay at least
    ``min_side`` pixels: a 12-megapixel phone photo then decodes many times faster. Default: full size.
    ``max_side``: the longer side is at most this many pixels (shrunk right after decoding, before the
    orientation and colour copies), for callers that need no more (fingerprints, OCR).
    """
    name = describe_source(source)
    if isinstance(source, Image.Image):
        return _to_rgb(source, name, limits)
    if isinstance(source, np.ndarray):
        return _from_array(source, name)
    data = read_bytes(source, limits) if isinstance(source, (str, os.PathLike)) else bytes(source)
    return decode_bytes(data, name, limits, min_side, max_side).image


def load_rgb_array(source: ImageSource, limits: ImageLimits = ImageLimits(), *,
                   max_side: int | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB."""
    return np.asarray(load_image(source, limits, max_side=max_side))


def load_bgr_array(source: ImageSource, limits: ImageLimits = ImageLimits(), *,
                   max_side: int | None = None) -> np.ndarray:
    """HxWx3 uint8 BGR, contiguous (what OpenCV and PaddleOCR expect)."""
    return np.ascontiguousarray(load_rgb_array(source, limits, max_side=max_side)[:, :, ::-1])


@dataclass(frozen=True, eq=False)
class Decoded:
    """What one decode gives: the oriented 8-bit RGB image, the photo's size as shown (EXIF orientation applied)
    in the file's own pixels, and its format as PIL names it (``JPEG``, ``PNG``, ...)."""

    image: Image.Image
    size: tuple[int, int]
    format: str


def decode_bytes(data: bytes, name: str, limits: ImageLimits, min_side: int | None = None,
                 max_side: int | None = None) -> Decoded:
    """The one place a photo's bytes become pixels (``load_image`` and ``skutag.vision.photo.Photo`` call it):
    checks, reduced JPEG decoding, the shrink to ``max_side``, orientation and colour, under ``DECODE_BUDGET``."""
    if not data:
        raise ImageDecodeError(f"{name}: empty input (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"{name}: {len(data)} bytes, over the {limits.max_bytes}-byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_size(image.size, name, limits)
            stored, file_format = image.size, image.format or ""
            if image.format == "JPEG" and (min_side or max_side):
                # never below min_side (nor max_side) on either side: libjpeg decodes at 1/2, 1/4, 1/8
                side = max(min_side or 0, max_side or 0) if max_side else min_side
                image.draft(image.mode, (side, side))
            pixels = image.size[0] * image.size[1]
            with DECODE_BUDGET.hold(pixels, limits.wait_s, name):
                image.load()  # force full decode: truncated files fail here
                shown = _shown_size(image, stored)  # after the load: a PNG's EXIF may follow its pixels
                if max_side and max(image.size) > max_side:
                    image = shrink(image, max_side)
                rgb = _to_rgb(image, name, limits)
                del image
            if pixels >= LARGE_DECODE:  # a server that decoded one huge photo must not hold that memory
                heap.return_freed_memory()
                heap.trim()
            return Decoded(rgb, shown, file_format)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{name}: image too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{name}: not a recognised image format") from None
    except (ImageTooLargeError, ImageBusyError):
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"{name}: corrupt or truncated image ({exc})") from None


def _shown_size(image: Image.Image, stored: tuple[int, int]) -> tuple[int, int]:
    """(width, height) as the photo is shown: its ``stored`` size (the file's own pixels), turned where the loaded
    ``image``'s EXIF orientation says so."""
    width, height = stored
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block: shown as stored (``_to_rgb`` skips it too)
        orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def shrink(image: Image.Image, max_side: int) -> Image.Image:
    """The image with its longer side ``max_side`` (box-reduced first, then bilinear: fast and alias-free)."""
    scale = max_side / max(image.size)
    size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _wide_to_l(image)
    resample = Image.NEAREST if image.mode in ("P", "1") else Image.BILINEAR
    return image.resize(size, resample, reducing_gap=None if resample == Image.NEAREST else 2.0)


def _check_size(size: tuple[int, int], name: str, limits: ImageLimits) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{name}: zero-size image ({width}x{height})")
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} = {width * height} pixels, over the {limits.max_pixels}-pixel limit"
        )


def _to_rgb(image: Image.Image, name: str, limits: ImageLimits) -> Image.Image:
    _check_size(image.size, name, limits)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not lose the photo
        pass
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _wide_to_l(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def _wide_to_l(image: Image.Image) -> Image.Image:
    """16/32-bit and float grayscale -> 8-bit by scaling the full range."""
    array = np.asarray(image, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    scaled = np.zeros_like(array) if high <= low else (array - low) * (255.0 / (high - low))
    return Image.fromarray(scaled.round().astype(np.uint8), mode="L")


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    if array.size == 0:
        raise ImageDecodeError(f"{name}: zero-size array")
    if array.dtype != np.uint8:
        raise ImageDecodeError(f"{name}: array dtype must be uint8, got {array.dtype}")
    if array.ndim == 2:
        return Image.fromarray(array, mode="L").convert("RGB")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(array[:, :, :3]), mode="RGB")
    raise ImageDecodeError(f"{name}: array must be HxW or HxWx3 RGB, got shape {array.shape}")
