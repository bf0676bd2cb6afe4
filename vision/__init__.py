"""Vision stage: product photo -> top-k Chinese labels (softmax) + L2-normalised embedding.

    from skutag.vision import load_model
    model = load_model()                      # efficientnet-lite0 on ONNX Runtime (exported once, cached)
    results = model.predict(["a.jpg", b"...jpeg bytes..."], top_k=5)
    results[0].top_k[0].label, results[0].embedding.shape   # ('矿泉水瓶'-style label, (1280,))

Backbones (``BACKBONES``): efficientnet-lite0 (default), efficientnet-lite2 (accuracy option),
wwts (Alibaba 万物识别 from a local folder). Runtimes: ``onnx`` (default; ``int8=True`` for static
INT8) and ``torch``. This package never imports the ``skutag`` application.
"""

from .backbones import BACKBONES, BackboneSource, get_backbone
from .config import VisionConfig
from .errors import CheckpointFormatError, ModelFilesMissingError, UnknownBackboneError
from .image import ImageDecodeError, ImageError, ImageSource, ImageTooLargeError, load_image
from .model import VisionModel, clear_model_cache, load_model
from .result import LabelScore, VisionResult
from .runtime import RUNTIMES

__all__ = [
    "BACKBONES", "RUNTIMES", "BackboneSource", "CheckpointFormatError", "ImageDecodeError", "ImageError",
    "ImageSource", "ImageTooLargeError", "LabelScore", "ModelFilesMissingError", "UnknownBackboneError",
    "VisionConfig", "VisionModel", "VisionResult", "clear_model_cache", "get_backbone", "load_image", "load_model",
]
