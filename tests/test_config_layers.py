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


@pytest.mark.parametrize("name, text, where", [
    ("c.toml", "[demo]\ntop_k = 3\n[extra\n", r"c\.toml: line 3: Expected '\]'"),
    ("c.json", '{"demo": {\n  "top_k": 3,\n}}', r"c\.json: line 3: Expecting property name"),
    ("c.yaml", "demo:\n  top_k: [1,\n", r"c\.yaml: line 3: while parsing a flow node: .*found '<stream end>'"),
    ("c.yml", "demo: {top_k: 3\nname: x\n", r"c\.yml: line \d+: "),
])
def test_a_config_file_with_a_syntax_error_names_the_file_and_line(demo_registry, tmp_path, name, text, where):
    file = tmp_path / name
    file.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"config file .*{where}"):
        SkutagConfig.load(file, environ={})


@pytest.mark.parametrize("name, text, what", [
    ("list.json", "[1, 2]", "top level must be a table of sections.*got a list"),
    ("scalar.yaml", "just text\n", "top level must be a table of sections.*got text"),
    ("section.yaml", "demo: 5\n", r"section\.yaml: section 'demo' must be a table.*got a number"),
])
def test_a_config_file_of_the_wrong_shape_is_a_config_error(demo_registry, tmp_path, name, text, what):
    file = tmp_path / name
    file.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=what):
        SkutagConfig.load(file, environ={})


def test_an_empty_yaml_config_file_means_defaults(demo_registry, tmp_path):
    file = tmp_path / "empty.yaml"
    file.write_text("", encoding="utf-8")
    assert SkutagConfig.load(file, environ={}).demo == DemoSection()


def test_a_mapping_field_is_read_from_json_in_the_environment():
    config = SkutagConfig.load(environ={"SKUTAG_DECISION__SYNONYMS": '{"Golden": "Yellow-Apple"}'})
    assert config.decision.synonyms == {"Golden": "Yellow-Apple"}
    for raw in ("a=b", '["a", "b"]', "{not json"):
        with pytest.raises(ConfigError, match=r"decision\.synonyms: cannot read .* must be a JSON object.*"
                                              r"SKUTAG_DECISION__SYNONYMS="):
            SkutagConfig.load(environ={"SKUTAG_DECISION__SYNONYMS": raw})


def test_a_list_field_is_read_from_a_json_array_or_commas_in_the_environment():
    key = "SKUTAG_DECISION__ALWAYS_REVIEW"
    config = SkutagConfig.load(environ={key: '["食品饮料 > 饮料冲调", "Packages > Juice, nectar"]'})
    assert config.decision.always_review == ("食品饮料 > 饮料冲调", "Packages > Juice, nectar")
    assert SkutagConfig.load(environ={key: "Fruit, Vegetables"}).decision.always_review == ("Fruit", "Vegetables")
    with pytest.raises(ConfigError, match=r"decision\.always_review: cannot read .* as a JSON array"):
        SkutagConfig.load(environ={key: '["Fruit", '})
    with pytest.raises(ConfigError, match=r"decision\.always_review: .* must be a JSON array of plain values"):
        SkutagConfig.load(environ={key: '[["Fruit"]]'})
    with pytest.raises(ConfigError, match=r"decision\.always_review: .* must be a JSON array of texts"):
        SkutagConfig.load(environ={key: "[2024]"})
    # text that only starts with a bracket is plain comma-separated text
    assert SkutagConfig.load(environ={key: "[Promo] Gifts, Fruit"}).decision.always_review == ("[Promo] Gifts", "Fruit")


@pytest.mark.parametrize("overrides, key", [
    ({"decision.auto_threshold": 1.5}, "decision.auto_threshold must be between 0 and 1"),
    ({"decision.review_threshold": -0.1}, "decision.review_threshold must be between 0 and 1"),
    ({"decision.target_precision": 95}, "decision.target_precision must be between 0 and 1"),
    ({"decision.audit_rate": float("nan")}, "decision.audit_rate must be between 0 and 1"),
    ({"decision.audit_rate": [0.1]}, r"decision.audit_rate must be a number between 0 and 1, got \[0.1\]"),
    ({"decision.review_threshold": 0.7, "decision.auto_threshold": 0.6},
     r"decision.review_threshold \(0.7\) must not be above decision.auto_threshold \(0.6\)"),
    ({"decision.min_class_support": -1}, "decision.min_class_support must be a whole number >= 0"),
])
def test_out_of_range_decision_values_are_refused_by_name(overrides, key):
    with pytest.raises(ConfigError, match=key):
        SkutagConfig.load(environ={}, overrides=overrides)


def test_decision_values_from_the_environment_are_checked_too(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text("[decision]\nauto_threshold = 0.9\nreview_threshold = 0.5\n", encoding="utf-8")
    config = SkutagConfig.load(file, environ={"SKUTAG_DECISION__AUDIT_RATE": "0"})
    decision = config.decision
    assert (decision.auto_threshold, decision.review_threshold, decision.audit_rate) == (0.9, 0.5, 0)
    with pytest.raises(ConfigError, match="decision.auto_threshold must be between 0 and 1, got 60"):
        SkutagConfig.load(file, environ={"SKUTAG_DECISION__AUTO_THRESHOLD": "60"})
