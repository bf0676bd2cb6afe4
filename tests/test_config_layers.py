"""The one config object: defaults < file < SKUTAG_* environment < flags."""

from dataclasses import dataclass

import pytest

from skutag import config as config_module
from skutag.config import ConfigError, SkutagConfig


@dataclass(frozen=True)
class DemoSection:
    top_k: int = 5
    threshold: float = 0.6
    enabled: bool = True
    name: str = "lite0"


@pytest.fixture()
def demo_registry(monkeypatch):
    monkeypatch.setattr(config_module, "SECTION_REGISTRY", {"demo": f"{__name__}:DemoSection"})


def test_layers_apply_in_order(demo_registry, tmp_path):
    file = tmp_path / "skutag.toml"
    file.write_text('[demo]\ntop_k = 7\nname = "from-file"\n', encoding="utf-8")
    env = {"SKUTAG_DEMO__TOP_K": "9", "SKUTAG_DEMO__ENABLED": "false", "OTHER": "x"}
    config = SkutagConfig.load(file, environ=env, overrides={"demo.threshold": 0.8, "demo.top_k": None})
    assert config.demo == DemoSection(top_k=9, threshold=0.8, enabled=False, name="from-file")


def test_unknown_keys_and_bad_values_are_named(demo_registry, tmp_path):
    with pytest.raises(ConfigError, match="demo.nope"):
        SkutagConfig.load(environ={}, overrides={"demo.nope": 1})
    with pytest.raises(ConfigError, match="demo.top_k"):
        SkutagConfig.load(environ={"SKUTAG_DEMO__TOP_K": "many"})
    with pytest.raises(ConfigError, match="not found"):
        SkutagConfig.load(tmp_path / "missing.toml", environ={})
