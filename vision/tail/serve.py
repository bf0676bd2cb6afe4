"""Serving a fine-tuned tail: ``VisionTail``, what a model bundle keeps (``vision_tail.joblib``).

It holds the tail's one ONNX graph (fp32, exported when the tail was trained: ``skutag.vision.tail.train.
serving_tail``; what goes in and out: ``skutag.vision.tail.graphs``) and runs it where the plain network runs
(``runtime``: ONNX Runtime, or OpenVINO's CPU plugin), one run per batch of photos. No torch here, at import or
in any call: INT8 copies are made by ONNX Runtime's own quantization, once per tail and calibration.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Sequence

import numpy as np

from ..image import ImageLimits, ImageSource, decode_side
from ..photo import Photo, PhotoNeeds, photo_view
from ..preprocess import PreprocessSpec, normalize_batch
from .graphs import GRAPH_INPUTS
from .views import VIEWS, l2_normalize, view_crop

_GRAPH_LOCK = threading.RLock()
"""Held while a tail's INT8 copy is made or its sessions opened (the service tags side by side)."""


@dataclass
class VisionTail:
    """A fitted tail as serving runs it on photos.

    ``embed(photos)`` gives the fine-tuned embedding of each photo (``views`` averaged: training sets the
    centre crop, its mirror and the whole photo by default, ``skutag.tail_training.serving_views``), in
    place of the backbone's own embedding; ``label_and_embed`` gives the plain network's labels too, from
    the same run of the graph: every view of a photo goes through the frozen part once, the centre crop's
    activations serve the plain labels and the tuned embedding both.
    """

    backbone: str
    cut: str
    graph: bytes = field(repr=False, compare=False)
    """The serialised serving graph, fp32 (``skutag.vision.tail.graphs``: inputs ``input`` and ``views``,
    outputs ``logits``, ``embedding``, ``features``)."""
    preprocess: PreprocessSpec
    source_id: tuple[str, str]
    """(model id, version) of the backbone weights the graph was exported from."""
    trained_digest: str = field(repr=False)
    """The digest of the fitted weights with ``trained_views`` (``skutag.vision.tail.train.tail_digest``)."""
    trained_views: tuple[str, ...] = ("center", "flip")
    views: tuple[str, ...] = ("center", "flip")
    threads: int = 1
    joint: bool = True
    """Serving takes the plain network's labels from the tail's graph where it can (``label_and_embed``);
    False: the plain backbone gives them and the graph the tuned embedding only, two passes of the frozen part
    per photo (what ``bench_tail_serving`` compares against)."""
    int8: bool = False
    """ONNX Runtime serving on a static INT8 copy of the graph (QDQ, per-channel; the ImageNet classifier
    stays fp32), quantized once per tail on the ``calibration_dir`` photos: what ``vision.int8`` asks."""
    calibration_dir: str = ""
    """Photos INT8 is calibrated on; empty: the bundled ``models/calibration`` photos."""
    runtime: str = "onnx"
    """Where the graph runs, a serving setting the collector sets to the plain network's runtime
    (``skutag.vision.runtime.tail_runtime``): ``onnx`` (ONNX Runtime) or ``openvino`` (OpenVINO's CPU plugin, in
    the precision ``openvino_precision`` gives). INT8 runs on ONNX Runtime whatever this says."""
    _sessions: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _files: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _calibrations: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    SERVING_VIEWS: ClassVar[tuple[str, ...]] = tuple(VIEWS)
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
    @property
    def photo_needs(self) -> PhotoNeeds:
        """The size it reads a photo at: the backbone's (``VisionModel.photo_needs``)."""
        return PhotoNeeds.of(decode_side(self.preprocess.resize_shorter), self.preprocess.resize_shorter)

    def embed(self, sources: Sequence[ImageSource | Photo], batch_size: int = 32) -> list[np.ndarray | None]:
        """One fine-tuned embedding per photo; None for a photo that cannot be decoded. No labels asked: the
        graph runs the views through the frozen part and the tail only."""
        out: list[np.ndarray | None] = [None] * len(sources)
        readable, images = [], []
        for i, source in enumerate(sources):
            try:
                images.append(photo_view(source, self.photo_needs, self.LIMITS))
                readable.append(i)
            except Exception:  # noqa: BLE001 - the vision stage reports the photo's error
                continue
        spec = self.preprocess
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            views = [normalize_batch(np.stack([view_crop(image, view, spec) for image in chunk]), spec)
                     for view in self.views]
            _, _, tuned = self._run(None, views, len(chunk))
            for i, embedding in zip(readable[start:start + batch_size], tuned):
                out[i] = embedding
        return out

    def _run(self, centre: np.ndarray | None, views: list[np.ndarray], n: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One session run: ``centre`` (n normalised centre crops, or None: no labels asked) and ``views``
        (normalised crops of the same n photos, one array per further view) -> (plain logits, plain embedding,
        the tuned embedding: each view's features L2-normalised, averaged over the views, normalised again)."""
        size = self.preprocess.size
        empty = np.zeros((0, 3, size, size), dtype=np.float32)
        feeds = dict(zip(GRAPH_INPUTS, (empty if centre is None else centre,
                                        np.concatenate(views) if views else empty)))
        logits, plain, features = self.session()(feeds)
        per_view = l2_normalize(features).reshape(-1, n, features.shape[1])  # rows come view by view
        return logits, plain, l2_normalize(per_view.mean(axis=0)).astype(np.float32)

    # ------------------------------------------------------------------ labels and tuned embedding at once
    def serves_labels_of(self, model) -> bool:
        """Whether ``label_and_embed`` can stand in for ``model.predict`` + ``embed``: the model on the runtime
        the graph runs on, in the same precision (fp32 or OpenVINO's, or INT8 both), the backbone weights the
        graph was exported from, and serving views that include the centre crop."""
        return (self.joint and model.runtime == self.serving_runtime and bool(model.int8) == self.int8
                and "center" in self.views and (model.model_id, model.model_version) == self._precision_id())

    def _precision_id(self) -> tuple[str, str]:
        model_id, version = self.source_id
        return model_id, version + ("+int8" if self.int8 else "")  # how VisionModel names its INT8 export

    def label_and_embed(self, model, sources: Sequence[ImageSource | Photo], top_k: int = 5, batch_size: int = 16,
                        progress: Callable[[int], None] | None = None) -> tuple[list, list[np.ndarray | None]]:
        """``model.predict(sources)`` and ``embed(sources)`` from one run of the tail's graph per batch: the
        plain network's labels and embedding come from the centre crop's pass, the tuned embedding from the
        same pass and the other views' (the mirror of the centre crop; the whole photo cut from the same
        decode). Check ``serves_labels_of(model)`` first."""
        if not self.serves_labels_of(model):
            raise ValueError(f"this tail ({self.backbone}, views {self.views}) cannot serve labels for {model!r}")
        k = max(1, min(int(top_k), len(model.labels)))
        results, embeddings = [], []
        spec, others = model.preprocess, [view for view in self.views if view != "center"]
        cut = [view for view in others if view != "flip"]  # the mirror is the centre crop's, in numpy
        cut_views = (lambda image: [view_crop(image, view, spec) for view in cut]) if cut else None
        for start in range(0, len(sources), batch_size):
            chunk = sources[start:start + batch_size]
            crops, extras, positions, errors = model.load_batch_with(chunk, cut_views)
            outputs, tuned = None, [None] * len(chunk)
            if crops:
                batch = normalize_batch(np.stack(crops), spec)
                views = [np.ascontiguousarray(batch[:, :, :, ::-1]) if view == "flip"  # mirror of a normalised crop
                         else normalize_batch(np.stack([made[cut.index(view)] for made in extras]), spec)
                         for view in others]
                logits, plain, embedded = self._run(batch, views, len(crops))
                for row, embedding in zip(positions, embedded):
                    tuned[row] = embedding
                outputs = (logits, plain)
            results.extend(model.results_from_outputs(chunk, positions, outputs, errors, k))
            embeddings.extend(tuned)
            if progress is not None:
                progress(len(chunk))
        return results, embeddings

    # ------------------------------------------------------------------ runtimes
    @property
    def serving_runtime(self) -> str:
        """The runtime the graph runs on: ``runtime``, and ONNX Runtime for INT8."""
        from ..runtime import TAIL_RUNTIMES

        if self.runtime not in TAIL_RUNTIMES:
            raise ValueError(f"a tail's graph runs on {' or '.join(TAIL_RUNTIMES)}, not {self.runtime!r}")
        return "onnx" if self.int8 else self.runtime

    @property
    def answers(self) -> str:
        """What computes the served embeddings, as feature-cache keys name it (``vision.runtime.answers_of``;
        INT8 copies are told apart by ``precision``)."""
        from ..runtime import answers_of

        return answers_of(self.serving_runtime)

    def session(self) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
        """The graph opened on its serving runtime, as a function of the feeds giving ``GRAPH_OUTPUTS``; opened
        once per runtime and precision (INT8 or the runtime may be switched between calls)."""
        key = (self.serving_runtime, self.precision)
        opened = self._sessions.get(key)
        if opened is None:
            with _GRAPH_LOCK:
                opened = self._sessions.get(key)
                if opened is None:
                    opened = self._sessions[key] = self._open(key[0])
        return opened

    def _open(self, runtime: str) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
        if runtime == "openvino":
            return _openvino_graph(self.fp32_file(), self.threads)
        from skutag.inference import onnx_session

        session = onnx_session(self.int8_file() if self.int8 else self.graph, self.threads)
        return lambda feeds: session.run(None, feeds)

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

    def int8_file(self):
        """The static INT8 copy of the graph for this calibration, under ``$SKUTAG_HOME/vision/tails``;
        quantized (ONNX Runtime) on first use from the fp32 graph, which is written beside it. Calibration
        feeds each batch of photos as the centre crops and their mirrors as the other views."""
        from ..export import calibration_images, quantize_int8

        key = self.precision
        with _GRAPH_LOCK:
            if key in self._files and self._files[key].is_file():
                return self._files[key]
            fp32 = self.fp32_file()
            target = fp32.with_name(f"{fp32.stem}.{self.precision}.onnx")
            photos = calibration_images(self.calibration_dir or None)
            self._files[key] = quantize_int8(fp32, target, photos, self.preprocess, keep_fp32=("logits",),
                                             feeds=_calibration_feeds)
            return self._files[key]

    def fp32_file(self):
        """The fp32 graph as a file under ``$SKUTAG_HOME/vision/tails`` (what OpenVINO and INT8 quantization read),
        written once per tail, through a private name."""
        from ..export import default_cache_dir, temporary_path

        fp32 = default_cache_dir() / "tails" / f"{self.backbone}-{self.digest[:24]}-one.onnx"
        with _GRAPH_LOCK:
            if not fp32.is_file():
                fp32.parent.mkdir(parents=True, exist_ok=True)
                tmp = temporary_path(fp32)
                tmp.write_bytes(self.graph)
                os.replace(tmp, fp32)
        return fp32

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_sessions"], state["_files"], state["_calibrations"] = {}, {}, {}
        state["int8"], state["calibration_dir"], state["runtime"] = False, "", "onnx"  # serving settings: the collector sets them
        return state


def _openvino_graph(path, threads: int) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """The graph compiled by OpenVINO in this CPU's precision, called from any thread with the feeds."""
    from skutag.inference import OpenVinoCalls, openvino_model

    from ..runtime import openvino_precision
    from .graphs import GRAPH_OUTPUTS

    return OpenVinoCalls(openvino_model(path, threads, openvino_precision()), GRAPH_OUTPUTS)


def _calibration_feeds(batch: np.ndarray) -> dict[str, np.ndarray]:
    """What INT8 calibration runs the graph on: the photos' centre crops, and their mirrors as other views."""
    return dict(zip(GRAPH_INPUTS, (batch, np.ascontiguousarray(batch[:, :, :, ::-1]))))
