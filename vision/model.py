"""``VisionModel``: photos in, top-k Chinese labels + L2-normalised embeddings out, batched.

Every photo goes through ``vision.image.decode_bytes`` (EXIF orientation, grayscale/CMYK/palette/
alpha/16-bit to RGB, decompression-bomb and corrupt-file checks); big JPEGs are decoded at a reduced
DCT scale that still leaves the shorter side at least the backbone's resize size. A ``vision.photo.Photo``
(decoded once for every stage that reads it) gives its view at ``photo_needs`` instead. Photos of a batch
are decoded on ``threads`` worker threads. A photo that cannot be used gets a ``VisionResult`` with
``error`` set; the rest of its batch still runs.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from skutag.inference import default_threads

from .backbones import BackboneSource, get_backbone
from .image import ImageError, ImageLimits, ImageSource, decode_side
from .photo import Photo, PhotoNeeds, name_of, photo_view
from .preprocess import normalize_batch, resize_crop
from .result import LabelScore, VisionResult
from .runtime import resolve_runtime, runtime_class


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def top_k_indices(probs: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the k largest values, largest first."""
    part = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(probs, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


class VisionModel:
    """A loaded backbone on a runtime. Thread-safe: ``predict`` may be called from several threads."""

    def __init__(
        self, source: BackboneSource, engine, *, int8: bool = False, limits: ImageLimits = ImageLimits(), threads: int = 1
    ):
        self.source = source
        self.engine = engine
        self.int8 = int8
        self.limits = limits
        self.threads = max(1, int(threads))
        self.labels: list[str] = list(source.labels)
        self.embedding_dim: int = int(engine.embedding_dim)
        self._lock = threading.Lock()
        self._decoder: ThreadPoolExecutor | None = None

    @property
    def model_id(self) -> str:
        return self.source.model_id

    @property
    def model_version(self) -> str:
        return self.source.version + ("+int8" if self.int8 else "")

    @property
    def runtime(self) -> str:
        return self.engine.name

    @property
    def preprocess(self):
        return self.source.preprocess

    @property
    def photo_needs(self) -> PhotoNeeds:
        """The size it reads a photo at: the longer side ``decode_side`` of its resize, JPEGs reduced no further
        than its resize on either side (what a ``Photo`` given to ``predict`` must have been asked for)."""
        spec = self.source.preprocess
        return PhotoNeeds.of(decode_side(spec.resize_shorter), spec.resize_shorter)

    @property
    def model_path(self) -> Path:
        """The file the runtime runs (the weights for torch, the ONNX model for onnx)."""
        return Path(self.engine.model_path)

    def __repr__(self) -> str:
        return (
            f"VisionModel({self.model_id} {self.model_version}, runtime={self.runtime}, "
            f"{len(self.labels)} labels, embedding_dim={self.embedding_dim})"
        )

    def predict(
        self,
        sources: Sequence[ImageSource | Photo],
        top_k: int = 5,
        batch_size: int = 16,
        progress: Callable[[int], None] | None = None,
    ) -> list[VisionResult]:
        """One ``VisionResult`` per source, in order. ``progress(n)`` is called after each batch of n."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        k = max(1, min(int(top_k), len(self.labels)))
        results: list[VisionResult] = []
        for start in range(0, len(sources), batch_size):
            chunk = sources[start : start + batch_size]
            results.extend(self._predict_chunk(chunk, k))
            if progress is not None:
                progress(len(chunk))
        return results

    def predict_one(self, source: ImageSource | Photo, top_k: int = 5) -> VisionResult:
        return self.predict([source], top_k=top_k, batch_size=1)[0]

    def _load_crop(self, source: ImageSource | Photo, also: Callable | None = None) -> tuple[np.ndarray, object] | str:
        """Decode (a ``Photo``: take its view, decoded once for every stage), check and resize+crop one photo
        (uint8 HxWx3) with ``also(decoded photo)`` (None without it), or the reason it cannot be used."""
        try:
            image = photo_view(source, self.photo_needs, self.limits)
        except ImageError as exc:
            return str(exc)
        return resize_crop(image, self.source.preprocess), (also(image) if also is not None else None)

    def _load_crops(self, chunk: Sequence[ImageSource | Photo], also: Callable | None = None) -> list:
        """PIL decodes and resamples without the GIL: spread the photos over ``threads`` workers."""
        if self.threads == 1 or len(chunk) == 1:
            return [self._load_crop(source, also) for source in chunk]
        with self._lock:
            if self._decoder is None:
                self._decoder = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="vision-decode")
        return list(self._decoder.map(lambda source: self._load_crop(source, also), chunk))

    def load_batch(self, chunk: Sequence[ImageSource | Photo]) -> tuple[list[np.ndarray], list[int], dict[int, str]]:
        """The network-ready crops of the readable sources, their positions in ``chunk``, and why the
        others cannot be used (position -> message)."""
        crops, _, positions, errors = self.load_batch_with(chunk)
        return crops, positions, errors

    def load_batch_with(self, chunk: Sequence[ImageSource | Photo], also: Callable | None = None
                        ) -> tuple[list[np.ndarray], list, list[int], dict[int, str]]:
        """``load_batch`` and, per readable photo, ``also(decoded photo)`` (e.g. other views of it), from the
        same decode: (crops, extras, positions, errors)."""
        crops: list[np.ndarray] = []
        extras: list = []
        positions: list[int] = []
        errors: dict[int, str] = {}
        for position, loaded in enumerate(self._load_crops(chunk, also)):
            if isinstance(loaded, str):
                errors[position] = loaded
            else:
                crops.append(loaded[0])
                extras.append(loaded[1])
                positions.append(position)
        return crops, extras, positions, errors

    def _predict_chunk(self, chunk: Sequence[ImageSource | Photo], k: int) -> list[VisionResult]:
        crops, positions, errors = self.load_batch(chunk)
        outputs = None
        if crops:
            batch = normalize_batch(np.stack(crops), self.source.preprocess)
            with self._lock:  # one session run at a time per model; runs use all their threads
                outputs = self.engine.run(batch)
        return self.results_from_outputs(chunk, positions, outputs, errors, k)

    def results_from_outputs(self, chunk: Sequence[ImageSource | Photo], positions: Sequence[int],
                             outputs: tuple[np.ndarray, np.ndarray] | None, errors: dict[int, str],
                             k: int) -> list[VisionResult]:
        """``VisionResult`` per source of ``chunk`` from the network's ``(logits, embedding)`` rows (row i is
        ``chunk[positions[i]]``) and the reasons the other sources could not be read. Also what a graph
        computing these outputs beside others (``vision.tail``'s joint graph) turns into results."""
        names = [name_of(source) for source in chunk]
        results: list[VisionResult | None] = [None] * len(chunk)
        if positions:
            logits, embeddings = outputs
            probs = softmax(np.asarray(logits, dtype=np.float32))
            embeddings = l2_normalize(np.asarray(embeddings, dtype=np.float32))
            best = top_k_indices(probs, k)
            for row, position in enumerate(positions):
                scores = tuple(
                    LabelScore(self.labels[index], int(index), float(probs[row, index])) for index in best[row]
                )
                results[position] = VisionResult(
                    image=names[position], top_k=scores, embedding=embeddings[row].copy(),
                    model_id=self.model_id, model_version=self.model_version,
                )
        for position, message in errors.items():
            results[position] = VisionResult(
                image=names[position], model_id=self.model_id, model_version=self.model_version, error=message
            )
        return results  # type: ignore[return-value]


_CACHE: dict[tuple, VisionModel] = {}
_CACHE_LOCK = threading.Lock()


def load_model(
    backbone: str = "efficientnet-lite0",
    runtime: str = "auto",
    int8: bool = False,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
    weights: str | Path | None = None,
    calibration_dir: str | Path | None = None,
    max_pixels: int | None = None,
) -> VisionModel:
    """Load (once per distinct arguments) a backbone from the registry on a runtime.

    ``runtime``: a name from ``RUNTIMES``, or ``auto`` (``vision.runtime.resolve_runtime``).
    ``weights``: a local weights file (efficientnet-*) or model folder (wwts) instead of the default.
    ``cache_dir``: where ONNX exports live (default ``$SKUTAG_HOME/vision``).
    ``threads``: intra-op threads (default: CPU cores, at most 8).
    """
    threads = int(threads) if threads else default_threads()
    runtime = resolve_runtime(runtime, int8=bool(int8))
    key = (
        backbone, runtime, bool(int8), threads,
        str(cache_dir or ""), str(weights or ""), str(calibration_dir or ""), max_pixels,
    )
    with _CACHE_LOCK:
        if key not in _CACHE:
            entry = get_backbone(backbone)
            engine_class = runtime_class(runtime)
            source = entry.resolve(weights)
            engine = engine_class(
                source, threads=threads, int8=bool(int8), cache_dir=cache_dir, calibration_dir=calibration_dir
            )
            limits = ImageLimits(max_pixels=max_pixels) if max_pixels else ImageLimits()
            _CACHE[key] = VisionModel(source, engine, int8=bool(int8), limits=limits, threads=threads)
        return _CACHE[key]


def clear_model_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
