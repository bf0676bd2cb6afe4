"""vision.runtime = auto: OpenVINO where the CPU computes bf16, ONNX Runtime for INT8, beside a one-graph tail and
on other CPUs; a tail runs where the plain network runs; the feature cache tells the runtimes' answers apart."""

from __future__ import annotations

import pytest

from skutag import vision
from skutag.vision import export
from skutag.vision.runtime import resolve_runtime, tail_runtime

BF16_CPU = {"avx2", "avx512f", "avx512_bf16"}
AVX2_CPU = {"avx2", "fma"}


@pytest.mark.parametrize("flags, int8, tail, expected", [
    (BF16_CPU, False, False, "openvino"),
    (AVX2_CPU, False, False, "onnx"),  # OpenVINO in f32 is no faster than ONNX Runtime
    (BF16_CPU, True, False, "onnx"),  # INT8 is ONNX Runtime's
    (BF16_CPU, False, True, "onnx"),  # the tail's fp32 embeddings, as the fusion layer learned them
    (set(), False, False, "onnx"),  # flags unreadable
])
def test_auto_picks_openvino_only_where_it_pays(monkeypatch, flags, int8, tail, expected):
    monkeypatch.setattr(export, "cpu_flags", lambda: flags)
    assert resolve_runtime("auto", int8=int8, one_graph_tail=tail) == expected


@pytest.mark.parametrize("name", ["onnx", "openvino", "torch"])
def test_a_named_runtime_is_kept(monkeypatch, name):
    monkeypatch.setattr(export, "cpu_flags", lambda: BF16_CPU)
    assert resolve_runtime(name, one_graph_tail=True) == name


@pytest.mark.parametrize("vision_runtime, expected", [("onnx", "onnx"), ("openvino", "openvino"), ("torch", "onnx")])
def test_a_tail_runs_where_the_plain_network_runs(vision_runtime, expected):
    assert tail_runtime(vision_runtime) == expected


def test_auto_without_the_package_is_onnx(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("no openvino here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(export, "cpu_flags", lambda: BF16_CPU)
    monkeypatch.setattr(builtins, "__import__", no_openvino)
    assert resolve_runtime("auto") == "onnx"


def test_an_unknown_runtime_is_named_with_the_choices():
    with pytest.raises(Exception, match="auto, torch, onnx, openvino"):
        vision.load_model("efficientnet-lite0", runtime="tensorrt")


def test_load_model_resolves_auto_and_the_feature_key_names_what_computed_it(monkeypatch, tmp_path):
    from skutag.config import SkutagConfig
    from skutag.evidence import EvidenceCollector

    monkeypatch.setenv("SKUTAG_HOME", str(tmp_path))
    for flags, answers in ((BF16_CPU, "openvino+bf16"), (AVX2_CPU, "onnx")):
        monkeypatch.setattr(export, "cpu_flags", lambda flags=flags: flags)
        vision.clear_model_cache()
        model = vision.load_model("efficientnet-lite0", runtime="auto")
        assert model.engine.answers == answers
        collector = EvidenceCollector(SkutagConfig.load())
        assert collector.vision_key().endswith("-" + answers)
    vision.clear_model_cache()
