"""OCR of the training photos when ``fusion.ocr_train_gate = "auto"`` (the policy: ``skutag.fusion.train_gate``).

``skutag train`` collects the other evidence first (and fits the vision tail), then reads the sample, fits a
model without OCR for its out-of-fold answers, and reads the rows the policy names after it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from skutag.catalog import Product
from skutag.config import SkutagConfig
from skutag.evidence import EvidenceCollector
from skutag.fusion.model import FusionModel
from skutag.fusion.train_gate import rows_after_sample, sample_rows
from skutag.grouping import training_groups

READ_CHUNK = 256  # photos per OCR call: each chunk's reads reach the feature cache as they come


def read_training_ocr(collector: EvidenceCollector, labelled: Sequence[Product], training: Any,
                      config: SkutagConfig) -> tuple[Any, dict[str, Any]]:
    """``training`` (a ``skutag.training.TrainingSet`` without OCR; ``labelled[i]`` is row ``i``'s product)
    with OCR read for the rows the policy picks. Returns it and what the manifest records."""
    cfg = config.fusion
    started = time.perf_counter()
    photo = np.array([p.image is not None and ev.vision is not None for p, ev in zip(labelled, training.evidence)],
                     dtype=bool)
    if not photo.any() or len(set(training.paths)) < 2:  # nothing to read, or nothing to fit (training says why)
        return training, {"mode": "auto", "photos": int(photo.sum()), "read": 0}
    sample = sample_rows(len(photo), cfg.ocr_train_sample, cfg.random_state) & photo
    training = _with_ocr(collector, labelled, training, sample)
    predicted, confidence = _answers_without_ocr(training, config, tail=collector.tail is not None)
    reads = rows_after_sample(training.evidence, training.paths, training.brands, sample, predicted, confidence, cfg)
    rest = reads.rows & photo
    training = _with_ocr(collector, labelled, training, rest)
    record = {"mode": "auto", "photos": int(photo.sum()), "read": int((sample | rest).sum()),
              "sample": int(sample.sum()), **reads.record(),
              "seconds": round(time.perf_counter() - started, 1)}
    return training, record


def _answers_without_ocr(training: Any, config: SkutagConfig, tail: bool) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold (predicted, confidence) of the training rows from a fusion model of every modality but OCR,
    fitted as ``fit_and_save`` fits the real one."""
    from skutag.text import TitleFeaturizer

    overrides: dict[str, Any] = {"fusion.modalities": tuple(m for m in config.fusion.modalities if m != "ocr")}
    if tail:
        overrides["fusion.vision_top_k"] = config.fusion.vision_top_k_with_tail
    config = config.with_overrides(overrides)
    evidence = [ev.without("ocr") for ev in training.evidence]
    model = FusionModel(config.fusion, title_featurizer=TitleFeaturizer.from_config(config.text))
    model.fit_and_featurize(evidence, training.paths, training.brands,
                            groups=training_groups(evidence, training.paths, config))
    return model.oof_


def _with_ocr(collector: EvidenceCollector, labelled: Sequence[Product], training: Any, rows: np.ndarray) -> Any:
    evidence = list(training.evidence)
    chosen = np.flatnonzero(rows)
    for start in range(0, len(chosen), READ_CHUNK):
        part = chosen[start:start + READ_CHUNK]
        for i, ev in zip(part, collector.add_ocr([labelled[i] for i in part], [evidence[i] for i in part])):
            evidence[i] = ev
    return replace(training, evidence=evidence)
