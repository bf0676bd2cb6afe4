"""Duplicate detection for uploaded photos.

* exact: the SHA-256 of the bytes (the MD5 is kept too, as the article's catalogue key);
* near: a 64-bit perceptual DCT hash (``imagehash.phash``) of the decoded, oriented photo.
  Re-encoded, resized or lightly recompressed copies land within a few bits of each other.

``PerceptualIndex`` finds stored hashes within ``max_distance`` bits without scanning every
hash: a 64-bit hash is split into ``max_distance + 1`` bands, and by the pigeonhole principle
two hashes that differ in at most ``max_distance`` bits agree exactly on at least one band.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

import imagehash
from PIL import Image

from skutag.vision.image import ImageLimits
from skutag.vision.photo import Photo, PhotoNeeds

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class ImageFingerprint:
    sha256: str
    md5: str
    phash: int  # signed 64-bit, as stored in a BIGINT column
    width: int
    height: int
    size_bytes: int
    content_type: str


PHASH_SIDE = 512
FINGERPRINT_NEEDS = PhotoNeeds.of(PHASH_SIDE)
"""What a fingerprint reads of a photo: a thumbnail (the perceptual hash reads 32 x 32 pixels of it)."""


def fingerprint(photo: Photo | bytes, limits: ImageLimits = ImageLimits()) -> ImageFingerprint:
    """Hash a photo; raises ``vision.image.ImageError`` for anything that is not a usable photo. ``photo``: a
    ``Photo`` whose needs include ``FINGERPRINT_NEEDS`` (its SHA-256 and its one decode, shared with the stages
    that read it after), or bytes (decoded here, to the thumbnail only: memory follows that size, not the
    file's)."""
    if not isinstance(photo, Photo):
        photo = Photo.of_bytes(photo, FINGERPRINT_NEEDS, limits)
    decoded = photo.decoded()  # refuses what is not a usable photo
    width, height = decoded.size
    return ImageFingerprint(
        sha256=photo.sha256,
        md5=hashlib.md5(photo.data, usedforsecurity=False).hexdigest(),
        phash=perceptual_hash(decoded.view(PHASH_SIDE)),
        width=width,
        height=height,
        size_bytes=len(photo.data),
        content_type=Image.MIME.get(decoded.format.upper(), f"image/{decoded.format.lower()}" if decoded.format
                                    else "application/octet-stream"),
    )


def perceptual_hash(image: Image.Image) -> int:
    """The 64-bit DCT hash of a decoded RGB image as a signed integer."""
    bits = imagehash.phash(image, hash_size=8).hash.flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return to_signed(value)


def to_signed(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >= (1 << 63) else value


def hamming(a: int, b: int) -> int:
    return ((a & _MASK64) ^ (b & _MASK64)).bit_count()


class PerceptualIndex:
    """In-memory near-duplicate index over (image id, phash) pairs; thread-safe."""

    def __init__(self, max_distance: int = 6):
        if not 0 <= max_distance < 16:
            raise ValueError(f"max_distance must be in 0..15 bits, got {max_distance}")
        self.max_distance = max_distance
        self._bands = band_slices(max_distance + 1)
        self._buckets: list[dict[int, set[int]]] = [{} for _ in self._bands]
        self._hashes: dict[int, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._hashes)

    def add(self, image_id: int, phash: int) -> None:
        with self._lock:
            if image_id in self._hashes:
                return
            self._hashes[image_id] = phash
            for buckets, key in zip(self._buckets, self._band_keys(phash)):
                buckets.setdefault(key, set()).add(image_id)

    def nearest(self, phash: int, exclude: int | None = None) -> tuple[int, int] | None:
        """``(image_id, distance)`` of the closest stored hash within ``max_distance``, or None."""
        with self._lock:
            candidates: set[int] = set()
            for buckets, key in zip(self._buckets, self._band_keys(phash)):
                candidates |= buckets.get(key, set())
            best: tuple[int, int] | None = None
            for image_id in candidates:
                if image_id == exclude:
                    continue
                distance = hamming(phash, self._hashes[image_id])
                if distance <= self.max_distance and (best is None or (distance, image_id) < (best[1], best[0])):
                    best = (image_id, distance)
            return best

    def _band_keys(self, phash: int) -> list[int]:
        unsigned = phash & _MASK64
        return [(unsigned >> start) & ((1 << width) - 1) for start, width in self._bands]


def band_slices(count: int) -> list[tuple[int, int]]:
    """Split 64 bits into ``count`` contiguous bands (start, width)."""
    base, extra = divmod(64, count)
    slices, start = [], 0
    for i in range(count):
        width = base + (1 if i < extra else 0)
        slices.append((start, width))
        start += width
    return slices
