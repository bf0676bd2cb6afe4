"""Serving a fine-tuned tail: ``VisionTail``, what a model bundle keeps (``vision_tail.joblib``).

It holds the tail's ONNX graphs (fp32, exported when the tail was trained: ``skutag.vision.tail.train.
serving_tail``) and runs them on ONNX Runtime. No torch here, at import or in any call: INT8 copies are
made by ONNX Runtime's own quantization, once per tail and calibration.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ..image import ImageLimits, ImageSource, decode_side, load_image
from ..preprocess import PreprocessSpec, normalize_batch
from .views import VIEWS, l2_normalize, view_crop

TUNED_GRAPH, JOINT_GRAPH = "tuned", "joint"
"""The graphs a tail keeps (``skutag.vision.tail.network.GRAPH_OUTPUTS`` names what each gives)."""
_FILE_SUFFIXES = {TUNED_GRAPH: "", JOINT_GRAPH: "-joint"}
_GRAPH_LOCK = threading.RLock()
"""Held while a tail's INT8 copies are made or its sessions opened (the service tags side by side)."""


@dataclass
class VisionTail:
    """A fitted tail as serving runs it on photos.

    ``embed(photos)`` gives the fine-tuned embedding of each photo (``views`` averaged: training sets the
    centre crop, its mirror and the whole photo by default, ``skutag.tail_training.serving_views``), in
    place of the backbone's own embedding; ``label_and_embed`` gives the plain network's labels too, from
    the same pass of the frozen part.
    """

    backbone: str
    cut: str
    graphs: dict[str, bytes] = field(repr=False, compare=False)
    """Serialised ONNX graphs, fp32, input ``input`` (N x 3 x S x S): ``tuned`` -> ``features``; ``joint`` ->
    ``logits``, ``embedding`` (the plain network's) and ``features``."""
    preprocess: PreprocessSpec
    source_id: tuple[str, str]
    """(model id, version) of the backbone weights the graphs were exported from."""
    trained_digest: str = field(repr=False)
    """The digest of the fitted weights with ``trained_views`` (``skutag.vision.tail.train.tail_digest``)."""
    trained_views: tuple[str, ...] = ("center", "flip")
    views: tuple[str, ...] = ("center", "flip")
    threads: int = 1
    joint: bool = True
    """Serving computes the plain network's labels in the same pass as the tuned embedding where it can
    (``label_and_embed``); False: two separate graphs (what ``bench_tail_serving`` compares against)."""
    int8: bool = False
    """ONNX Runtime serving on static INT8 copies of the graphs (QDQ, per-channel; the ImageNet classifier
    stays fp32), quantized once per tail on the ``calibration_dir`` photos: what ``vision.int8`` asks."""
    calibration_dir: str = ""
    """Photos INT8 is calibrated on; empty: the bundled ``models/calibration`` photos."""
    _sessions: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _files: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _calibrations: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    runtime: ClassVar[str] = "onnx"
    """Serving runs ONNX Runtime (part of the feature cache's key)."""
    SERVING_VIEWS: ClassVar[tuple[str, ...]] = tuple(VIEWS)
    JOINT_VIEWS: ClassVar[frozenset] = frozenset({"center", "flip"})
    """Views the joint pass serves from the centre crop it already has; other deterministic views (the
    whole photo) are cut from the same decode and run through the tuned graph beside it."""
    LIMITS: ClassVar[ImageLimits] = ImageLimits()

    def __post_init__(self) -> None:
        self.views, self.trained_views = tuple(self.views), tuple(self.trained_views)
        unknown = [view for view in self.views if view not in VIEWS]
        if unknown:
            raise ValueError(f"a tail serves deterministic views only ({', '.join(VIEWS)}), not {unknown}")

    @property
    def digest(self) -> str:
        """SHA-256 over the tail's weights and views: what cached embeddings are keyed by."""
        if self.views == self.trained_views:
            return self.trained_digest
        return hashlib.sha256(f"{self.trained_digest}|{','.join(self.views)}".encode()).hexdigest()

    # ------------------------------------------------------------------ the tuned embedding
    def embed(self, sources: Sequence[ImageSource]) -> list[np.ndarray | None]:
        """One fine-tuned embedding per photo; None for a photo that cannot be decoded."""
        out: list[np.ndarray | None] = [None] * len(sources)
        readable, images = [], []
        for i, source in enumerate(sources):
            try:
                images.append(load_image(source, self.LIMITS, min_side=self.preprocess.resize_shorter,
                                         max_side=decode_side(self.preprocess.resize_shorter)))
                readable.append(i)
            except Exception:  # noqa: BLE001 - the vision stage reports the photo's error
                continue
        if not readable:
            return out
        for i, embedding in zip(readable, self._embed_images(images)):
            out[i] = embedding
        return out

    def _embed_images(self, images: list, batch_size: int = 32) -> np.ndarray:
        spec, per_view = self.preprocess, []
        for view in self.views:
            parts = []
            for start in range(0, len(images), batch_size):
                crops = [view_crop(image, view, spec) for image in images[start:start + batch_size]]
                parts.append(self._tuned_features(np.stack(crops), spec))
            per_view.append(np.concatenate(parts))
        return l2_normalize(np.mean(per_view, axis=0)).astype(np.float32)

    def _tuned_features(self, crops: np.ndarray, spec: PreprocessSpec, batch_size: int = 32) -> np.ndarray:
        """The tuned graph's L2-normalised features of N x S x S x 3 uint8 crops."""
        session = self.session(TUNED_GRAPH)
        parts = [session.run(None, {"input": normalize_batch(crops[start:start + batch_size], spec)})[0]
                 for start in range(0, len(crops), batch_size)]
        return l2_normalize(np.concatenate(parts))

    # ------------------------------------------------------------------ labels and tuned embedding at once
    def serves_labels_of(self, model) -> bool:
        """Whether ``label_and_embed`` can stand in for ``model.predict`` + ``embed``: the model on ONNX
        Runtime in the same precision (fp32, or INT8 both), the backbone weights the graphs were exported
        from, and serving views that include the centre crop."""
        return (self.joint and model.runtime == "onnx" and bool(model.int8) == self.int8
                and "center" in self.views and (model.model_id, model.model_version) == self._precision_id())

    def _precision_id(self) -> tuple[str, str]:
        model_id, version = self.source_id
        return model_id, version + ("+int8" if self.int8 else "")  # how VisionModel names its INT8 export

    def label_and_embed(self, model, sources: Sequence[ImageSource], top_k: int = 5, batch_size: int = 16,
                        progress: Callable[[int], None] | None = None) -> tuple[list, list[np.ndarray | None]]:
        """``model.predict(sources)`` and ``embed(sources)`` with the frozen part run once per view: one
        graph gives the plain network's labels and embedding and the tuned embedding of the centre crop,
        the tuned graph the mirror's and the whole photo's (where ``views`` has them). Check
        ``serves_labels_of(model)`` first."""
        if not self.serves_labels_of(model):
            raise ValueError(f"this tail ({self.backbone}, views {self.views}) cannot serve labels for {model!r}")
        k = max(1, min(int(top_k), len(model.labels)))
        results, embeddings = [], []
        spec, extra = model.preprocess, [view for view in self.views if view not in self.JOINT_VIEWS]
        other_views = (lambda image: [view_crop(image, view, spec) for view in extra]) if extra else None
        for start in range(0, len(sources), batch_size):
            chunk = sources[start:start + batch_size]
            crops, others, positions, errors = model.load_batch_with(chunk, other_views)
            outputs, tuned = None, [None] * len(chunk)
            if crops:
                batch = normalize_batch(np.stack(crops), model.preprocess)
                logits, plain, center = self.session(JOINT_GRAPH).run(None, {"input": batch})
                per_view = [l2_normalize(center)]
                if "flip" in self.views:  # the mirror of a normalised crop is the normalised mirror
                    mirrored = np.ascontiguousarray(batch[:, :, :, ::-1])
                    per_view.append(l2_normalize(self.session(TUNED_GRAPH).run(None, {"input": mirrored})[0]))
                for index in range(len(extra)):  # the whole photo: cut from the same decode, tuned graph
                    per_view.append(self._tuned_features(np.stack([views[index] for views in others]), spec))
                for row, embedding in zip(positions, l2_normalize(np.mean(per_view, axis=0)).astype(np.float32)):
                    tuned[row] = embedding
                outputs = (logits, plain)
            results.extend(model.results_from_outputs(chunk, positions, outputs, errors, k))
            embeddings.extend(tuned)
            if progress is not None:
                progress(len(chunk))
        return results, embeddings

    # ------------------------------------------------------------------ ONNX Runtime
    def session(self, graph: str) -> Any:
        """The ONNX Runtime session of ``graph`` (``tuned`` or ``joint``) in the serving precision; opened
        once per precision (INT8 may be switched on or off between calls)."""
        key = (graph, self.precision)
        opened = self._sessions.get(key)
        if opened is None:
            from skutag.inference import onnx_session

            with _GRAPH_LOCK:
                opened = self._sessions.get(key)
                if opened is None:
                    source = self.int8_file(graph) if self.int8 else self.graphs[graph]
                    opened = self._sessions[key] = onnx_session(source, self.threads)
        return opened

    @property
    def precision(self) -> str:
        """``fp32``, or ``int8-<calibration key>`` (settings, preprocessing and photos): what the served
        embeddings depend on besides the weights (feature caches are keyed by it)."""
        if not self.int8:
            return "fp32"
        if self.calibration_dir not in self._calibrations:
            from ..export import calibration_images, calibration_key

            photos = calibration_images(self.calibration_dir or None)
            self._calibrations[self.calibration_dir] = calibration_key(photos, self.preprocess)
        return f"int8-{self._calibrations[self.calibration_dir]}"

    def int8_file(self, graph: str):
        """The static INT8 copy of ``graph`` for this calibration, under ``$SKUTAG_HOME/vision/tails``;
        quantized (ONNX Runtime) on first use from the fp32 graph, which is written beside it."""
        from ..export import calibration_images, default_cache_dir, quantize_int8, temporary_path

        key = (graph, self.precision)
        with _GRAPH_LOCK:
            if key in self._files and self._files[key].is_file():
                return self._files[key]
            fp32 = default_cache_dir() / "tails" / f"{self.backbone}-{self.digest[:24]}{_FILE_SUFFIXES[graph]}.onnx"
            if not fp32.is_file():
                fp32.parent.mkdir(parents=True, exist_ok=True)
                tmp = temporary_path(fp32)
                tmp.write_bytes(self.graphs[graph])
                os.replace(tmp, fp32)
            target = fp32.with_name(f"{fp32.stem}.{self.precision}.onnx")
            photos = calibration_images(self.calibration_dir or None)
            self._files[key] = quantize_int8(fp32, target, photos, self.preprocess, keep_fp32=("logits",))
            return self._files[key]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_sessions"], state["_files"], state["_calibrations"] = {}, {}, {}
        state["int8"], state["calibration_dir"] = False, ""  # serving settings: the collector sets them
        return state
