"""A product photo read once, hashed once and decoded once for every stage that looks at it.

Each stage takes a photo at its own size: the duplicate fingerprint a thumbnail, the vision backbone its input
(a few hundred pixels), OCR its detection input (up to ``ocr.max_side``). A ``Photo`` carries the bytes, their
SHA-256 and ``PhotoNeeds`` (the sides every stage that will read it asks for); the first stage that needs pixels
decodes it, once, on its own thread, into a ``DecodedPhoto``: the photo oriented, in RGB, shrunk to each of
those sides. Later stages take their view from it instead of decoding the bytes again::

    needs = model.photo_needs | ocr_needs          # PhotoNeeds: sides {1024, 2560}, JPEG reduced to >= 256
    photo = Photo.of_bytes(data, needs)            # nothing decoded yet; photo.sha256 computed on first use
    model.predict([photo]); engine.read([photo])  # one decode: vision takes view(1024), OCR view(2560)

The decode itself is ``vision.image.decode_bytes`` (pixel cap, decode budget, reduced JPEG decoding): the
largest side asked for bounds it, so memory follows what the stages need, not the file's pixel count.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Mapping, Optional

from PIL import Image

from . import image as images
from .image import ImageError, ImageLimits, ImageSource, describe_source, load_image

Side = Optional[int]
"""The longest side of a view in pixels; None: as decoded, full size."""


@dataclass(frozen=True)
class PhotoNeeds:
    """What the stages reading a photo need from its one decode: the longest side of each one's view
    (``sides``; None: the full size) and the shortest side a reduced JPEG decode must leave on both sides
    (``min_side``: the vision backbone's resize; None: no reduced decoding). ``a | b``: what both need."""

    sides: frozenset = frozenset()
    min_side: int | None = None

    @classmethod
    def of(cls, side: Side, min_side: int | None = None) -> "PhotoNeeds":
        """One stage's need: its view's longest side."""
        return cls(frozenset({side}), min_side)

    def __or__(self, other: "PhotoNeeds") -> "PhotoNeeds":
        return PhotoNeeds(self.sides | other.sides, max(self.min_side or 0, other.min_side or 0) or None)

    @property
    def decode_side(self) -> Side:
        """The longest side the decode keeps: the largest view asked for (None: the full size)."""
        return None if None in self.sides or not self.sides else max(self.sides)

    @property
    def side(self) -> Side:
        """The one side of a single stage's need."""
        if len(self.sides) != 1:
            raise ValueError(f"a stage asks for one view, not {sorted(self.sides, key=str)}")
        return next(iter(self.sides))


@dataclass(frozen=True, eq=False)
class DecodedPhoto:
    """A photo decoded once: its size as shown (EXIF orientation applied) in the file's own pixels, its format as
    PIL names it, and a view per side asked for (the oriented RGB photo shrunk to that longest side where it was
    larger; views that need no shrinking share the decoded image)."""

    size: tuple[int, int]
    format: str
    views: Mapping[Side, Image.Image] = field(repr=False)

    def view(self, side: Side) -> Image.Image:
        try:
            return self.views[side]
        except KeyError:
            raise ValueError(f"this photo was decoded for views of {sorted(self.views, key=str)} pixels, not {side}: "
                             "the stage reading it must be in the photo's needs") from None


class Photo:
    """One photo's bytes; their SHA-256, computed once on first use; decoded at most once, on first use, into the
    views ``needs`` asks for (a failed decode raises the same ``ImageError`` for every stage). Thread-safe: stages
    reading on several threads share the one decode. ``release()`` drops the decoded views once no stage will
    need them (memory back before a batch ends)."""

    def __init__(self, data: bytes, needs: PhotoNeeds, limits: ImageLimits = ImageLimits(), name: str | None = None):
        self.data = data
        self.needs = needs
        self.limits = limits
        self.name = name or describe_source(data)
        self._sha256: str | None = None
        self._decoded: DecodedPhoto | ImageError | None = None
        self._lock = threading.Lock()

    @classmethod
    def of_bytes(cls, data: bytes, needs: PhotoNeeds, limits: ImageLimits = ImageLimits()) -> "Photo":
        return cls(bytes(data), needs, limits)

    def __repr__(self) -> str:
        return f"Photo({self.name}, sides {sorted(self.needs.sides, key=str)})"

    @property
    def sha256(self) -> str:
        """The SHA-256 of the bytes (hex), computed once."""
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self.data).hexdigest()
        return self._sha256

    def decoded(self) -> DecodedPhoto:
        """The photo decoded (once) into its views; raises the decode's ``ImageError``."""
        with self._lock:
            if self._decoded is None:
                try:
                    self._decoded = self._decode()
                except ImageError as exc:
                    self._decoded = exc
            if isinstance(self._decoded, ImageError):
                raise self._decoded
            return self._decoded

    def view(self, side: Side) -> Image.Image:
        """The oriented RGB photo with its longer side at most ``side`` (one of ``needs.sides``)."""
        return self.decoded().view(side)

    def release(self) -> None:
        """Drop the decoded views (a stage asking again decodes again)."""
        with self._lock:
            self._decoded = None

    def _decode(self) -> DecodedPhoto:
        largest = self.needs.decode_side
        # reduced JPEG decoding only when no stage wants the full size
        decoded = images.decode_bytes(self.data, self.name, self.limits,
                                      min_side=self.needs.min_side if largest else None, max_side=largest)
        whole = decoded.image
        views = {side: whole if side is None or max(whole.size) <= side else images.shrink(whole, side)
                 for side in self.needs.sides}
        return DecodedPhoto(decoded.size, decoded.format, views)


def photo_view(source: ImageSource | Photo, needs: PhotoNeeds, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """A stage's view of ``source`` (``needs``: that stage's one side): a ``Photo``'s own view, decoded once for
    every stage; any other source decoded here, at that size."""
    if isinstance(source, Photo):
        return source.view(needs.side)
    return load_image(source, limits, min_side=needs.min_side, max_side=needs.side)


def name_of(source: ImageSource | Photo) -> str:
    """A short name of ``source`` for results and error messages."""
    return source.name if isinstance(source, Photo) else describe_source(source)
