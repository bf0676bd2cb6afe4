"""The wwts backbone (Alibaba 万物识别 / the article's ResNet-50) loads from a local folder.

The real ResNeSt-101 checkpoint (54,092 classes, ~400 MB) is not on this machine, so each test builds
a small checkpoint in the same format itself: real networks, real ``torch.save`` files, ModelScope's
``meta_info.txt`` or a plain label file, ``module.``-prefixed keys. Nothing is mocked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from skutag import vision
from skutag.vision.image import load_image
from skutag.vision.preprocess import PreprocessSpec, preprocess_images
from vision_support import retail_photo

pytestmark = pytest.mark.slow

LABELS = ["矿泉水瓶", "啤酒瓶", "背包", "篮球", "口红", "手机", "咖啡杯"]


def small_resnest(num_classes: int) -> torch.nn.Module:
    """A 4-block ResNeSt shaped like ModelScope's ResNeSt-101 (deep stem, radix 2, avg-down, avd)."""
    from timm.models.resnest import ResNestBottleneck
    from timm.models.resnet import ResNet

    torch.manual_seed(0)
    model = ResNet(
        block=ResNestBottleneck, layers=[1, 1, 1, 1], num_classes=num_classes, stem_type="deep", stem_width=32,
        avg_down=True, base_width=64, cardinality=1, block_args=dict(radix=2, avd=True, avd_first=False),
    )
    _randomise_batchnorm(model)
    return model.eval()


def article_resnet50(num_classes: int) -> torch.nn.Module:
    """The article's shape: torchvision ResNet-50 whose fc is replaced to match the label file."""
    from torchvision.models import resnet50

    torch.manual_seed(1)
    model = resnet50(weights=None)
    model.fc = torch.nn.Linear(model.fc.in_features, num_classes)
    _randomise_batchnorm(model)
    return model.eval()


def _randomise_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial running statistics, so a mis-loaded tensor changes the outputs."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)


def _reference_logits(model: torch.nn.Module, path: Path) -> np.ndarray:
    batch = preprocess_images([load_image(path)], PreprocessSpec.imagenet(224, 256))
    with torch.inference_mode():
        return model(torch.from_numpy(batch)).numpy()[0]


def test_modelscope_format_resnest_loads_and_matches(tmp_path):
    source = small_resnest(len(LABELS))
    state = {"module." + key: value for key, value in source.state_dict().items()}  # saved from DataParallel
    torch.save({"state_dict": state}, tmp_path / "pytorch_model.pt")
    (tmp_path / "meta_info.txt").write_text(
        "".join(f"{i}\t{label}\n" for i, label in enumerate(LABELS)), encoding="utf-8"
    )
    photo = retail_photo(440)
    expected = _reference_logits(source, photo)
    for runtime in ("torch", "onnx"):
        model = vision.load_model("wwts", runtime=runtime, weights=tmp_path, cache_dir=tmp_path / "cache")
        assert model.labels == LABELS and model.embedding_dim == 2048 and model.model_id == "wwts"
        result = model.predict_one(str(photo), top_k=3)
        probs = np.exp(expected - expected.max())
        probs /= probs.sum()
        best = np.argsort(-probs)[:3]
        assert [s.index for s in result.top_k] == best.tolist(), runtime
        assert [s.label for s in result.top_k] == [LABELS[i] for i in best]
        assert np.allclose([s.prob for s in result.top_k], probs[best], atol=1e-4), runtime


@pytest.mark.parametrize("wrap", ["plain", "twice_wrapped"])
def test_article_resnet50_with_plain_label_file(tmp_path, wrap):
    source = article_resnet50(len(LABELS))
    state = source.state_dict()
    if wrap == "twice_wrapped":  # DataParallel around DistributedDataParallel, inside a {"state_dict": ...}
        state = {"state_dict": {"module.module." + key: value for key, value in state.items()}}
    torch.save(state, tmp_path / "resnet50_wwts.pth")
    (tmp_path / "labels_zh.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    model = vision.load_model("wwts", runtime="torch", weights=tmp_path)
    photo = retail_photo(414)
    expected = _reference_logits(source, photo)
    result = model.predict_one(str(photo), top_k=len(LABELS))
    assert result.top_k[0].index == int(np.argmax(expected))
    assert result.embedding.shape == (2048,)
    assert sorted(s.index for s in result.top_k) == list(range(len(LABELS)))


def test_missing_folder_names_what_to_put_where(tmp_path):
    with pytest.raises(vision.ModelFilesMissingError) as error:
        vision.load_model("wwts", weights=tmp_path / "wwts")
    message = str(error.value)
    assert str(tmp_path / "wwts") in message and "pytorch_model.pt" in message and "meta_info.txt" in message


def test_missing_checkpoint_and_missing_labels(tmp_path):
    (tmp_path / "meta_info.txt").write_text("0\t猫\n", encoding="utf-8")
    with pytest.raises(vision.ModelFilesMissingError, match="no checkpoint in .*pytorch_model.pt"):
        vision.load_model("wwts", weights=tmp_path)
    (tmp_path / "meta_info.txt").unlink()
    torch.save(small_resnest(2).state_dict(), tmp_path / "pytorch_model.pt")
    with pytest.raises(vision.ModelFilesMissingError, match="no label file .*meta_info.txt.*labels_zh.txt"):
        vision.load_model("wwts", weights=tmp_path)


def test_label_count_must_match_the_classifier(tmp_path):
    torch.save(small_resnest(3).state_dict(), tmp_path / "pytorch_model.pt")
    (tmp_path / "labels_zh.txt").write_text("猫\n狗\n", encoding="utf-8")
    with pytest.raises(vision.CheckpointFormatError, match="3 classes but the label file has 2"):
        vision.load_model("wwts", runtime="torch", weights=tmp_path)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "pytorch_model.pt").write_bytes(b"not a torch file")
    (tmp_path / "labels_zh.txt").write_text("猫\n", encoding="utf-8")
    with pytest.raises(vision.CheckpointFormatError, match="not a readable torch checkpoint"):
        vision.load_model("wwts", runtime="torch", weights=tmp_path)
