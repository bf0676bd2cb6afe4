"""The one place ONNX Runtime sessions are made: every runtime option (threads, graph optimisation,
execution mode, providers, logging) is set here.

A leaf module: it imports nothing from the project, so every stage package may use it::

    from skutag.inference import onnx_session
    session = onnx_session(path_or_bytes, threads=2)

Thread counts are always explicit: ONNX Runtime otherwise takes every core, which is slow on small
shared machines and when the service tags side by side.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Sequence, Union

def available_cores() -> int:
    """The CPUs this process may run on (its affinity: a container or ``taskset`` may give it fewer than the
    machine has)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads(most: int = 8) -> int:
    """Compute threads when none are configured: one per available CPU, at most ``most``."""
    return max(1, min(available_cores(), most))


PROVIDERS = ("CPUExecutionProvider",)
"""Where graphs run: the CPU (the project serves on CPUs only)."""

LOG_SEVERITY = 3
"""Errors only: ONNX Runtime's warnings about unused initialisers and the like are noise here."""

GraphSource = Union[str, bytes, "os.PathLike[str]"]


def session_options(threads: int = 1) -> Any:
    """The session options every project session runs with: ``threads`` intra-op threads, one inter-op
    thread, sequential execution, every graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = LOG_SEVERITY
    return options


def onnx_session(graph: GraphSource, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session for ``graph``: a file path, or the serialised model itself (bytes)."""
    import onnxruntime as ort

    model = graph if isinstance(graph, (bytes, bytearray)) else os.fspath(graph)
    return ort.InferenceSession(model, session_options(threads), providers=list(PROVIDERS))


OPENVINO_PRECISIONS = ("f32", "bf16")
"""Inference precisions an OpenVINO CPU model may be compiled for (``bf16`` only pays on CPUs that compute
it natively: AVX-512 BF16 or AMX)."""


def openvino_model(graph: GraphSource, threads: int = 1, precision: str = "f32") -> Any:
    """An OpenVINO CPU model compiled from ``graph`` (an ONNX file path): ``threads`` inference threads,
    ``precision`` one of ``OPENVINO_PRECISIONS``. The latency hint: one stream, so every call (a batch, or the
    service's one photo) runs on all ``threads``; the throughput hint splits them into streams and a call runs on
    one of them (half the cores with two threads). Threads are not pinned to cores (worker processes would share
    one). OpenVINO is a dependency of skutag; an install without it is told so."""
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(f"OpenVINO precision must be one of {OPENVINO_PRECISIONS}, got {precision!r}")
    try:
        import openvino as ov
    except ImportError as exc:
        raise RuntimeError("vision runtime 'openvino' needs the openvino package: pip install openvino "
                           "(or choose runtime 'onnx')") from exc
    return ov.Core().compile_model(os.fspath(graph), "CPU", {
        "INFERENCE_NUM_THREADS": max(1, int(threads)), "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": precision, "ENABLE_CPU_PINNING": False})


class OpenVinoCalls:
    """A compiled OpenVINO model called from any thread with ``{input name or index: array}``, giving the outputs
    named ``outputs`` as arrays of their own. An infer request serves one call at a time, so each thread gets its
    own request."""

    def __init__(self, compiled: Any, outputs: Sequence[str]):
        by_name = {name: port for port in compiled.outputs for name in port.get_names()}
        self.compiled = compiled
        self.ports = [by_name[name] for name in outputs]
        self._local = threading.local()

    def __call__(self, feeds: dict) -> list:
        import numpy as np

        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer(feeds)
        return [np.array(result[port]) for port in self.ports]  # copies: the request's buffers are reused
