"""Inference runtimes, chosen by name: ``torch`` (eager PyTorch), ``onnx`` (ONNX Runtime) and ``openvino``
(OpenVINO's CPU plugin); ``auto`` (the default) picks OpenVINO where it pays, else ONNX Runtime.

A runtime takes a preprocessed ``Nx3xSxS`` float32 batch and returns ``(logits, embedding)`` as numpy
arrays. Thread counts are always set explicitly: torch's default OpenMP settings are pathologically
slow on small shared machines, and ONNX Runtime otherwise takes every core.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from .backbones import BackboneSource
from .errors import UnknownBackboneError


class TorchRuntime:
    """Eager PyTorch on the CPU (the article's way, with the model kept loaded)."""

    name = "torch"
    answers = "torch"  # which numbers it computes: runtimes (and precisions) differ in the last digits

    def __init__(self, source: BackboneSource, threads: int, int8: bool = False, **_options):
        if int8:
            raise ValueError("INT8 runs on ONNX Runtime: use runtime 'onnx' with int8")
        import torch

        torch.set_num_threads(threads)
        self._torch = torch
        self.network = source.build_network()
        self.embedding_dim = int(self.network.embedding_dim)
        self.model_path: Path = source.weights_path

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.inference_mode():
            logits, embedding = self.network(self._torch.from_numpy(batch))
        return logits.numpy(), embedding.numpy()


class OnnxRuntime:
    """ONNX Runtime on the CPU with the model exported once (fp32) or quantized once (static INT8)."""

    name = "onnx"
    answers = "onnx"  # INT8's own answers are told apart by the model version ("+int8")

    def __init__(
        self,
        source: BackboneSource,
        threads: int,
        int8: bool = False,
        cache_dir: str | Path | None = None,
        calibration_dir: str | Path | None = None,
        **_options,
    ):
        from skutag.inference import onnx_session

        from .export import OUTPUT_NAMES, ensure_int8, ensure_onnx

        self.model_path = (
            ensure_int8(source, cache_dir, calibration_dir) if int8 else ensure_onnx(source, cache_dir)
        )
        self.session = onnx_session(self.model_path, threads)
        self._input = self.session.get_inputs()[0].name
        self._outputs = list(OUTPUT_NAMES)
        self.embedding_dim = int(self.session.get_outputs()[1].shape[1])

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, embedding = self.session.run(self._outputs, {self._input: batch})
        return logits, embedding


class OpenVinoRuntime:
    """OpenVINO's CPU plugin on the same ONNX export, in bfloat16 where the CPU computes it natively (AVX-512
    BF16 or AMX: fp32 weights and inputs, bf16 arithmetic inside), fp32 elsewhere. Answers are close to fp32's,
    not equal: ``bench/bench_openvino.py`` measures how close and how fast, against ONNX Runtime.

    Several threads may call it (``skutag.inference.OpenVinoCalls``)."""

    name = "openvino"

    def __init__(self, source: BackboneSource, threads: int, int8: bool = False,
                 cache_dir: str | Path | None = None, **_options):
        if int8:
            raise ValueError("INT8 runs on ONNX Runtime: use runtime 'onnx' with int8")
        from skutag.inference import OpenVinoCalls, openvino_model

        from .export import OUTPUT_NAMES, ensure_onnx

        self.model_path = ensure_onnx(source, cache_dir)
        self.precision = openvino_precision()
        self.answers = answers_of(self.name)
        self.compiled = openvino_model(self.model_path, threads, self.precision)
        self._calls = OpenVinoCalls(self.compiled, OUTPUT_NAMES)
        self.embedding_dim = int(self._calls.ports[1].get_partial_shape()[1].get_length())

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, embedding = self._calls({0: batch})
        return logits, embedding


BF16_FLAGS = {"avx512_bf16", "amx_bf16"}
"""CPU flags of native bfloat16 arithmetic: where OpenVINO's bf16 runs faster than ONNX Runtime's fp32."""

AUTO = "auto"


def openvino_precision() -> str:
    """The precision OpenVINO runs in on this CPU: ``bf16`` where it computes bfloat16 natively, else ``f32``."""
    from .export import cpu_flags

    return "bf16" if cpu_flags() & BF16_FLAGS else "f32"


def answers_of(runtime: str) -> str:
    """What computes a (resolved) runtime's numbers, as cache keys name it: the runtime, and OpenVINO's precision."""
    return f"openvino+{openvino_precision()}" if runtime == "openvino" else runtime


def resolve_runtime(name: str, int8: bool = False, one_graph_tail: bool = False) -> str:
    """The runtime a configured name means. ``auto``: ``openvino`` where the package is installed and the CPU
    computes bf16 natively (there it runs the network about twice as fast as ONNX Runtime's fp32, with the
    embedding at cosine 0.99+ of fp32's: bench/bench_openvino.py), else ``onnx``; ``onnx`` all the same for INT8
    (ONNX Runtime's only) and beside a vision tail (``one_graph_tail``): the fusion layer learned from the tail's
    fp32 embeddings, and served in bf16 they cost val photos (docs/scale-out.md). A tail runs its one graph where
    the plain network runs (``tail_runtime``), so ``openvino`` named explicitly runs both there."""
    if name != AUTO:
        return name
    if int8 or one_graph_tail or openvino_precision() != "bf16":
        return "onnx"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "onnx"
    return "openvino"


TAIL_RUNTIMES = ("onnx", "openvino")
"""Where a vision tail's graph can run (``skutag.vision.tail.VisionTail.runtime``)."""


def tail_runtime(vision_runtime: str) -> str:
    """Where a tail's graph runs beside the plain network on ``vision_runtime`` (resolved): the same runtime, so
    the graph can serve the plain labels too; ONNX Runtime beside eager torch (a tail is served from ONNX)."""
    return vision_runtime if vision_runtime in TAIL_RUNTIMES else "onnx"


RUNTIMES: dict[str, str] = {
    "torch": "skutag.vision.runtime:TorchRuntime",
    "onnx": "skutag.vision.runtime:OnnxRuntime",
    "openvino": "skutag.vision.runtime:OpenVinoRuntime",
}


def runtime_class(name: str) -> type:
    """The class of a runtime named in ``RUNTIMES`` (``auto`` is resolved first: ``resolve_runtime``)."""
    try:
        module_name, _, class_name = RUNTIMES[name].partition(":")
    except KeyError:
        raise UnknownBackboneError(f"unknown runtime {name!r}; choose one of: {', '.join([AUTO, *RUNTIMES])}") from None
    return getattr(importlib.import_module(module_name), class_name)
