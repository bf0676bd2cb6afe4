"""Whether refitting the fusion layer on the same rows gives the same model, and what fitting its fold models one
at a time (``fusion.n_jobs = 1``) costs against side by side in threads (the default).

    SKUTAG_OCR__ROTATE=off .venv/bin/python -m bench.bench_fit_repeatability CATALOG SCORE_CATALOG [--fits 3]

Evidence comes from ``collect_training_set`` (the feature cache of ``SKUTAG_HOME``: run after a training or
``bench_review_order`` on the same photos, or it computes vision and OCR first). For each ``n_jobs`` the
``FusionModel`` is fitted ``--fits`` times on CATALOG; printed: each fit's seconds and the largest difference of
any probability on SCORE_CATALOG between the first fit and each later one (0.0: repeatable).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np

from skutag.catalog_io import read_catalog
from skutag.config import SkutagConfig
from skutag.evidence import EvidenceCollector
from skutag.fusion.model import FusionModel
from skutag.training import collect_training_set


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("catalog")
    parser.add_argument("score_catalog")
    parser.add_argument("--fits", type=int, default=3)
    parser.add_argument("--modalities", default="vision,ocr")
    args = parser.parse_args(argv)
    config = SkutagConfig.load(overrides={"fusion.modalities": tuple(m for m in args.modalities.split(",") if m)})
    collector = EvidenceCollector(config)
    train, scored = (collect_training_set(collector, read_catalog(path, require_category=True).products, config)
                     for path in (args.catalog, args.score_catalog))
    for n_jobs in (-1, 1):  # the evidence is the same for both: only the fits' threads differ
        fusion = replace(config.fusion, n_jobs=n_jobs)
        seconds, probas = [], []
        for _ in range(args.fits):
            started = time.perf_counter()
            model = FusionModel(fusion).fit(list(train.evidence), list(train.paths), list(train.brands))
            seconds.append(round(time.perf_counter() - started, 2))
            probas.append(model.score(scored.evidence).proba)
        print(json.dumps({"n_jobs": n_jobs, "rows": len(train.paths), "fit_seconds": seconds,
                          "max_probability_difference": [float(np.abs(probas[0] - p).max()) for p in probas[1:]]}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
