"""ONNX export (once per weights hash) and static INT8 quantization of a backbone.

Files live under the cache directory (``$SKUTAG_HOME/vision`` by default, never the repository)::

    <cache>/<model_id>-<weights sha256[:16]>-f<format>/model.onnx              fp32, inputs: input; outputs: logits, embedding
    <cache>/<model_id>-<weights sha256[:16]>-f<format>/model.int8-<calib>.onnx  static INT8, QDQ, per-channel

Both are written to a temporary name and renamed into place, so a crash or a second process never
leaves a half-written model behind. INT8 is *static* quantization (activations calibrated on sample
photos with MinMax, QDQ format, per-channel int8 weights, uint8 activations; the final classifier
stays fp32); ONNX Runtime's *dynamic* INT8 is avoided on purpose: on
convnets it is several times slower than fp32 on CPU.

On an x86 CPU without VNNI (AVX2 only), ONNX Runtime's uint8 x int8 kernels add products in pairs into 16
bits (``vpmaddubsw``) and saturate, so the embedding drifts from fp32's. Weights are then quantized to 7 bits
(``reduce_range``), which cannot saturate, at some of INT8's speed (``int8_scheme()``; the scheme is part of
the cache key, so each CPU kind quantizes its own copy). Figures: vision/README.md, "INT8".
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from skutag.paths import skutag_home_dir

from .backbones import BackboneSource, get_backbone
from .errors import ModelFilesMissingError
from .image import ImageError, load_image
from .labels import PROJECT_MODELS_DIR
from .preprocess import preprocess_images

EXPORT_FORMAT = 2
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "embedding")
DEFAULT_CALIBRATION_DIR = PROJECT_MODELS_DIR / "calibration"
log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
QUANT_SETTINGS = "qdq-perchannel-u8s8-minmax-fp32head-v2"
_VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo is not readable); read once per process
    (runtime choices and cache keys ask on every batch)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


_warned_7bit = False


def warn_if_7bit() -> None:
    """Say once per process that INT8 on this CPU runs 7-bit weights (slower gain, some accuracy lost)."""
    global _warned_7bit
    if int8_scheme() == "u8s8-7bit" and not _warned_7bit:
        _warned_7bit = True
        log.warning("INT8 on a CPU without VNNI: weights are quantized to 7 bits (8 would saturate here), "
                    "which gains less speed and costs some accuracy (vision/README.md, INT8). Leave vision.int8 "
                    "off where accuracy matters more")


def int8_scheme() -> str:
    """``u8s8``, or ``u8s8-7bit`` on an x86 CPU whose flags show no VNNI (see the module's docstring);
    ``SKUTAG_INT8_SCHEME`` overrides it (to compare the two on one machine)."""
    forced = os.environ.get("SKUTAG_INT8_SCHEME", "").strip()
    if forced:
        if forced not in ("u8s8", "u8s8-7bit"):
            raise ValueError(f"SKUTAG_INT8_SCHEME must be u8s8 or u8s8-7bit, not {forced!r}")
        return forced
    import platform

    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    flags = cpu_flags()
    return "u8s8-7bit" if x86 and flags and not (flags & _VNNI_FLAGS) else "u8s8"


def default_cache_dir() -> Path:
    """``$SKUTAG_HOME/vision`` (``skutag.paths``)."""
    return skutag_home_dir() / "vision"


def export_dir(source: BackboneSource, cache_dir: str | Path | None) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return root / f"{source.model_id}-{source.weights_sha256[:16]}-f{EXPORT_FORMAT}"


def temporary_path(path: Path) -> Path:
    """A private name beside ``path`` for writing it (per process and thread), renamed into place after."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp{path.suffix}")


def ensure_onnx(source: BackboneSource, cache_dir: str | Path | None = None) -> Path:
    """The fp32 ONNX model for ``source``, exported from torch on first use. A process that has not imported
    torch (a server or worker tagging through ONNX Runtime) has a child process export it: torch's libraries,
    once loaded, stay resident for the life of the process (hundreds of MB per server or worker)."""
    path = export_dir(source, cache_dir) / "model.onnx"
    if path.is_file():
        return path
    if "torch" not in sys.modules and _export_in_child(source, cache_dir) and path.is_file():
        return path
    _export(source, path)
    return path


def _export_in_child(source: BackboneSource, cache_dir: str | Path | None) -> bool:
    """``python -m skutag.vision.export NAME WEIGHTS CACHE``: the child resolves the backbone from its registry
    name and weights file and exports it into the same folder. False (and a log line) when it could not."""
    root = export_dir(source, cache_dir).parent
    command = [sys.executable, "-m", "skutag.vision.export", source.name, str(source.weights_path), str(root)]
    log.info("exporting %s to ONNX in a child process (once per weights)", source.name)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log.warning("exporting %s in a child process failed, exporting here: %s", source.name,
                    done.stderr.strip()[-500:])
        return False
    return True


def _export(source: BackboneSource, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    import torch

    from .networks import freeze_same_padding

    size = source.preprocess.size
    network = freeze_same_padding(source.build_network(), size)
    dummy = torch.zeros(1, 3, size, size)
    tmp = temporary_path(path)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic in TF-"SAME" padding
        torch.onnx.export(
            network, (dummy,), str(tmp), dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}},
        )
    os.replace(tmp, path)


def calibration_images(folder: str | Path | None = None) -> list[Path]:
    folder = Path(folder) if folder else DEFAULT_CALIBRATION_DIR
    photos = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not photos:
        raise ModelFilesMissingError(
            f"INT8 calibration needs sample photos: none found in {folder} "
            "(the project ships some in models/calibration; or set calibration_dir to a folder of product photos)"
        )
    return photos


def calibration_key(photos: list[Path], preprocess) -> str:
    """What an INT8 model's calibration depends on: the settings, the preprocessing and the photos."""
    digest = hashlib.sha256(QUANT_SETTINGS.encode())
    if int8_scheme() != "u8s8":  # keeps the keys of copies quantized before the scheme existed
        digest.update(int8_scheme().encode())
    digest.update(repr(preprocess).encode())  # calibration statistics depend on the preprocessing
    for photo in photos:
        digest.update(photo.name.encode())
        digest.update(hashlib.sha256(photo.read_bytes()).digest())
    return digest.hexdigest()[:12]


class PhotoCalibrationReader:
    """Feeds preprocessed calibration photos to ONNX Runtime's calibrator, a few at a time: ``feeds(batch)``
    names the graph's inputs (default: the batch as ``input``)."""

    def __init__(self, photos: list[Path], preprocess, batch_size: int = 8,
                 feeds: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None):
        self.photos = photos
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.feeds = feeds or (lambda batch: {INPUT_NAME: batch})
        self._batches: Iterator[np.ndarray] | None = None

    def _generate(self) -> Iterator[np.ndarray]:
        images = []
        for photo in self.photos:
            try:
                images.append(load_image(photo))
            except ImageError:
                continue
            if len(images) == self.batch_size:
                yield preprocess_images(images, self.preprocess)
                images = []
        if images:
            yield preprocess_images(images, self.preprocess)

    def get_next(self) -> dict | None:
        if self._batches is None:
            self._batches = self._generate()
        batch = next(self._batches, None)
        return None if batch is None else self.feeds(batch)

    def rewind(self) -> None:
        self._batches = None


def _nodes_computing(model_path: Path, outputs: tuple[str, ...]) -> list[str]:
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [node.name for node in graph.node if set(node.output) & set(outputs)]


def write_static_int8(prepared: Path, out: Path, reader, nodes_to_exclude: list[str] | tuple[str, ...] = (),
                      moving_average: bool = False) -> None:
    """The static INT8 recipe every quantized copy uses (vision here, OCR's detector in ``skutag.ocr.quantize``):
    QDQ, per-channel int8 weights (7-bit where ``int8_scheme()`` says so), uint8 activations whose ranges are
    the calibration batches' MinMax, or with ``moving_average`` the moving average of their minima and maxima.
    ``prepared``: a graph through ``quant_pre_process``; ``reader``: an ONNX Runtime ``CalibrationDataReader``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(prepared), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax, reduce_range=int8_scheme() == "u8s8-7bit",
        nodes_to_exclude=list(nodes_to_exclude),
        extra_options={"CalibMovingAverage": True} if moving_average else {},
    )


def quantize_int8(fp32: Path, path: Path, photos: list[Path], preprocess,
                  keep_fp32: tuple[str, ...] = (OUTPUT_NAMES[0],),
                  feeds: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None) -> Path:
    """Static INT8 of the fp32 graph ``fp32`` (input ``input``, or what ``feeds(batch)`` names for a batch of
    calibration photos) written to ``path`` unless it is there: QDQ,
    per-channel int8 weights (7-bit where ``int8_scheme()`` says so), uint8 activations calibrated with
    MinMax on ``photos`` preprocessed by ``preprocess``. Nodes computing the ``keep_fp32`` outputs (the classifier: negligible cost, the softmax
    stays close to fp32) are left in fp32."""
    warn_if_7bit()
    if path.is_file():
        return path
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = temporary_path(path.with_name(f"{path.stem}.prep.onnx"))
    tmp = temporary_path(path)
    try:
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        write_static_int8(prepared, tmp, PhotoCalibrationReader(photos, preprocess, feeds=feeds),
                          nodes_to_exclude=_nodes_computing(prepared, keep_fp32))
        os.replace(tmp, path)
    finally:
        for leftover in (prepared, tmp):
            leftover.unlink(missing_ok=True)
    return path


def ensure_int8(
    source: BackboneSource, cache_dir: str | Path | None = None, calibration_dir: str | Path | None = None
) -> Path:
    """The static INT8 (QDQ, per-channel) model, quantized from the fp32 export on first use."""
    photos = calibration_images(calibration_dir)
    fp32 = ensure_onnx(source, cache_dir)
    path = fp32.with_name(f"model.int8-{calibration_key(photos, source.preprocess)}.onnx")
    return quantize_int8(fp32, path, photos, source.preprocess)


def _main(argv: list[str]) -> int:
    """``python -m skutag.vision.export NAME WEIGHTS CACHE``: export backbone NAME (weights file WEIGHTS) into
    the cache folder CACHE (what ``ensure_onnx`` runs in a child process)."""
    name, weights, cache = argv
    source = get_backbone(name).resolve(weights)
    _export(source, export_dir(source, cache) / "model.onnx")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
