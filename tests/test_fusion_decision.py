"""Decider: global and per-class thresholds, tiers, always-review list, audit sample, rule engine."""

from __future__ import annotations

import numpy as np
import pytest

from skutag.fusion.config import DecisionConfig
from skutag.fusion.decision import Decider, RuleEngine
from skutag.fusion.thresholds import coverage_at_precision, fit_class_thresholds
from skutag.fusion.model import Scores
from skutag.fusion.result import Decision

WATER = "食品饮料 > 饮料冲调 > 饮用水"
SODA = "食品饮料 > 饮料冲调 > 碳酸饮料"
JUICE = "食品饮料 > 饮料冲调 > 果汁"
MILK = "食品饮料 > 乳品 > 牛奶"
CLASSES = [WATER, SODA, JUICE, MILK]


def decide(proba, config=None, thresholds=None, product_id="p1", source="model", contributions=None):
    decider = Decider(config or DecisionConfig(audit_rate=0), class_thresholds=thresholds, known_paths=CLASSES)
    return decider.decide(product_id, CLASSES, np.asarray(proba, float), contributions or {"vision": 1.0},
                          source=source)


def test_tiers_follow_the_global_threshold_and_the_review_threshold():
    auto = decide([0.7, 0.1, 0.1, 0.1])
    assert auto.decision is Decision.AUTO and auto.path == WATER and auto.label == "饮用水"
    assert "global threshold 0.60" in auto.reasons[0]
    assert [a.path for a in auto.alternatives] == [SODA, JUICE, MILK]
    assert decide([0.5, 0.3, 0.1, 0.1]).decision is Decision.REVIEW
    # no leaf reaches review, but the parent "饮料冲调" holds 0.65: suggested at the parent for review
    strict = DecisionConfig(audit_rate=0, review_threshold=0.4)
    backoff = decide([0.2, 0.2, 0.25, 0.35], strict)
    assert backoff.decision is Decision.REVIEW and backoff.path == "食品饮料 > 饮料冲调" and backoff.label == "饮料冲调"
    assert backoff.confidence == pytest.approx(0.65)
    low = decide([0.2, 0.2, 0.25, 0.35], DecisionConfig(audit_rate=0, review_threshold=0.4, backoff_to_parent=False))
    assert low.decision is Decision.MANUAL and low.path == MILK


def test_per_class_thresholds_reach_the_target_precision_on_held_out_rows():
    rng = np.random.RandomState(0)
    confidence = rng.rand(400)
    predicted = np.array([WATER] * 200 + [SODA] * 200, dtype=object)
    # water is right whenever confidence > 0.3; soda only above 0.8
    truth = np.where((predicted == WATER) & (confidence > 0.3) | (predicted == SODA) & (confidence > 0.8),
                     predicted, JUICE)
    thresholds = fit_class_thresholds(predicted, confidence, truth, target_precision=0.95, min_support=5)
    assert 0.25 < thresholds[WATER] < 0.4 and 0.75 < thresholds[SODA] < 0.85
    for cls in (WATER, SODA):
        chosen = (predicted == cls) & (confidence >= thresholds[cls])
        assert (truth[chosen] == cls).mean() >= 0.95
    assert fit_class_thresholds(predicted[:3], confidence[:3], truth[:3], 0.95, min_support=5) == {}
    result = decide([0.5, 0.3, 0.1, 0.1], thresholds={WATER: 0.45})
    assert result.decision is Decision.AUTO and "class threshold 0.45" in result.reasons[0]
    assert decide([0.7, 0.1, 0.1, 0.1], thresholds={WATER: 0.9}).decision is Decision.REVIEW


def test_always_review_list_and_audit_sample():
    config = DecisionConfig(audit_rate=0, always_review=("食品饮料 > 饮料冲调",))
    held = decide([0.9, 0.05, 0.03, 0.02], config)
    assert held.decision is Decision.REVIEW and "always-review" in held.reasons[-1]
    assert decide([0.02, 0.03, 0.05, 0.9], config).decision is Decision.AUTO

    audit = Decider(DecisionConfig(audit_rate=0.1, audit_seed=7), known_paths=CLASSES)
    sampled = [audit.in_audit_sample(f"sku-{i}") for i in range(5000)]
    assert 0.08 < np.mean(sampled) < 0.12
    assert sampled == [audit.in_audit_sample(f"sku-{i}") for i in range(5000)]  # deterministic per id
    pid = next(f"sku-{i}" for i, s in enumerate(sampled) if s)
    result = audit.decide(pid, CLASSES, np.array([0.9, 0.05, 0.03, 0.02]), {})
    assert result.decision is Decision.REVIEW and "audit" in result.reasons[-1]
    assert audit.decide(pid, CLASSES, np.array([0.9, 0.05, 0.03, 0.02]), {}, audit=False).decision is Decision.AUTO


def test_rule_engine_merges_synonyms_drops_banned_labels_and_checks_paths(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("synonyms:\n  碳酸饮料: 汽水\nbanned_labels: [果汁]\nalways_review: []\n", encoding="utf-8")
    config = DecisionConfig(audit_rate=0, rules_file=str(rules), synonyms={WATER: SODA.replace("碳酸饮料", "汽水")})
    engine = RuleEngine.from_config(config)
    classes, proba, notes = engine.apply(CLASSES, np.array([0.3, 0.3, 0.3, 0.1]))
    assert classes == ["食品饮料 > 饮料冲调 > 汽水", MILK]
    assert np.allclose(proba, [0.6, 0.1]) and notes == ["banned labels removed (30% of the probability)"]
    decider = Decider(config, known_paths=CLASSES)
    result = decider.decide("p", CLASSES, np.array([0.3, 0.3, 0.3, 0.1]), {})
    # the merged class is not in the tree: consistent paths only, so a human looks at it
    assert result.path == "食品饮料 > 饮料冲调 > 汽水" and result.decision is Decision.REVIEW
    assert "not in the category tree" in result.reasons[-1]
    everything_banned = Decider(DecisionConfig(audit_rate=0, banned_labels=("食品饮料",)), known_paths=CLASSES)
    gone = everything_banned.decide("p", CLASSES, np.array([0.25] * 4), {})
    assert gone.path is None and gone.decision is Decision.MANUAL
    with pytest.raises(FileNotFoundError):
        RuleEngine.from_config(DecisionConfig(rules_file=str(tmp_path / "none.yaml")))


def test_a_banned_label_that_held_the_belief_leaves_an_unsure_answer_not_a_confident_one():
    decider = Decider(DecisionConfig(audit_rate=0, banned_labels=("果汁",)), known_paths=CLASSES)
    result = decider.decide("p", CLASSES, np.array([0.004, 0.001, 0.993, 0.002]), {})
    assert result.path == WATER and result.confidence == pytest.approx(0.004)
    assert result.decision is Decision.MANUAL and "banned labels removed (99% of the probability)" in result.reasons


def test_cold_start_answers_from_one_source_never_auto_tag():
    single = decide([0.8, 0.1, 0.05, 0.05], source="cold-start", contributions={"title": 1.0})
    assert single.decision is Decision.REVIEW and "one source alone" in single.reasons[-1]
    agreed = decide([0.8, 0.1, 0.05, 0.05], source="cold-start", contributions={"title": 0.6, "vision": 0.4})
    assert agreed.decision is Decision.AUTO


def test_coverage_at_precision_and_batch_decisions_keep_order_and_errors():
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, True, True, False, True, False])
    coverage, threshold = coverage_at_precision(confidence, correct, 0.95)
    assert coverage == pytest.approx(0.5) and threshold == pytest.approx(0.9)
    scores = Scores(classes=np.array(CLASSES, dtype=object), proba=np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]]),
                    contributions=[{"vision": 1.0}, {"title": 1.0}])
    out = Decider(DecisionConfig(audit_rate=0), known_paths=CLASSES).decide_batch(
        ["a", "b"], scores, model_version="m/v0001", errors=[(), ("ocr: unreadable",)])
    assert [r.id for r in out] == ["a", "b"] and out[1].path == MILK and out[1].error == "ocr: unreadable"
    assert out[0].model_version == "m/v0001"


def test_reasons_show_confidence_and_threshold_apart():
    decider = Decider(DecisionConfig(audit_rate=0), class_thresholds={WATER: 0.9996}, known_paths=CLASSES)
    below = decider.decide("p", CLASSES, np.array([0.9994, 0.0004, 0.0001, 0.0001]), {})
    assert below.decision is Decision.REVIEW and "confidence 0.9994 below auto threshold 0.9996" in below.reasons
    above = decider.decide("q", CLASSES, np.array([0.9997, 0.0001, 0.0001, 0.0001]), {})
    assert above.decision is Decision.AUTO and "confidence 0.9997 >= class threshold 0.9996" in above.reasons
    plain = decider.decide("r", CLASSES, np.array([0.1, 0.5, 0.3, 0.1]), {})
    assert "confidence 0.50 below auto threshold 0.60" in plain.reasons


def test_bound_thresholds_keep_the_promise_with_few_answers_and_refuse_classes_that_cannot():
    from skutag.fusion.config import DecisionConfig as Config
    from skutag.fusion.thresholds import NEVER, fit_bound_thresholds, fit_thresholds

    rng = np.random.default_rng(0)
    predicted, confidence, truth = [], [], []
    for _ in range(200):  # a clean class: sure and right
        predicted.append(WATER), confidence.append(rng.uniform(0.7, 1.0)), truth.append(WATER)
    for i in range(60):  # a class the model gets wrong 4 times in 10, whatever its confidence
        predicted.append(SODA), confidence.append(rng.uniform(0.7, 1.0)), truth.append(SODA if i % 10 < 6 else WATER)
    for _ in range(3):  # a class with 3 held-out answers
        predicted.append(JUICE), confidence.append(0.65), truth.append(JUICE)
    config = Config(audit_rate=0)
    fit = fit_bound_thresholds(predicted, confidence, truth, CLASSES, config)
    assert fit.thresholds[SODA] == NEVER  # its precision bound never reaches 95%
    assert fit.thresholds[JUICE] == fit.pooled  # few answers: the pooled cut, not the article's 0.6
    assert fit.thresholds[WATER] < 0.75 and fit.expected_precision >= 0.95
    low, high = fit.precision_interval
    assert low <= fit.expected_precision <= high
    # skutag 0.1's rule would auto-tag the 3-answer class at 0.6 and accept the bad class above some cut
    empirical = fit_thresholds(predicted, confidence, truth, CLASSES, Config(audit_rate=0, threshold_method="empirical"))
    assert JUICE not in empirical and empirical[SODA] < NEVER
