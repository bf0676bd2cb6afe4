"""Preprocessing: the backbone's own transform, vectorised over a batch."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from vision_support import retail_photos
from skutag.vision.image import load_image
from skutag.vision.preprocess import PreprocessSpec, normalize_batch, preprocess_images, resize_crop


def _torchvision_reference(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    interpolation = {"bicubic": transforms.InterpolationMode.BICUBIC, "bilinear": transforms.InterpolationMode.BILINEAR}
    transform = transforms.Compose([
        transforms.Resize(spec.resize_shorter, interpolation=interpolation[spec.interpolation]),
        transforms.CenterCrop(spec.size),
        transforms.PILToTensor(),
    ])
    pixels = transform(image).to(torch.float32)
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    return ((pixels - mean) / std).numpy()


def test_efficientnet_spec_is_googles_eval_transform():
    lite0 = PreprocessSpec.tf_efficientnet(224)
    assert (lite0.size, lite0.resize_shorter, lite0.interpolation) == (224, 256, "bicubic")  # 224 / 0.875
    assert PreprocessSpec.tf_efficientnet(260).resize_shorter == 292
    crop = np.array([[[0, 127, 255]]], dtype=np.uint8)[None]
    assert np.allclose(normalize_batch(crop, lite0)[0, :, 0, 0], [-1.0, -0.00392, 1.0], atol=1e-4)  # x/127.5 - 1


def test_matches_resize_then_centre_crop():
    images = [load_image(path) for path, _ in retail_photos()[:6]]
    for spec in (PreprocessSpec.tf_efficientnet(224), PreprocessSpec.tf_efficientnet(260), PreprocessSpec.imagenet()):
        batch = preprocess_images(images, spec)
        assert batch.shape == (6, 3, spec.size, spec.size) and batch.dtype == np.float32
        assert batch.flags["C_CONTIGUOUS"]
        for image, ours in zip(images, batch):
            reference = _torchvision_reference(image, spec)
            # one-step box resampling == resize-then-crop, up to float rounding in PIL's filter weights
            grey_levels = np.abs(ours - reference) * np.asarray(spec.std, dtype=np.float32).reshape(3, 1, 1)
            assert grey_levels.mean() < 0.01 and grey_levels.max() <= 1.0 + 1e-3


def test_batch_equals_one_by_one_and_handles_odd_shapes():
    spec = PreprocessSpec.tf_efficientnet(224)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in [(50, 900), (900, 50), (1, 1), (224, 224)]]
    batch = preprocess_images(images, spec)
    for image, row in zip(images, batch):
        assert np.array_equal(row, normalize_batch(resize_crop(image, spec)[None], spec)[0])
    assert preprocess_images([], spec).shape == (0, 3, 224, 224)
