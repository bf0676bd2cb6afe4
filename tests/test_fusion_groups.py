"""Out-of-fold answers that look like answers to new products: photo series (near-duplicate shots of one
product) stay on one side of every split, so a held-out photo is never answered by a model that saw its twin."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fusion_fixtures import grocery_rows

from skutag.catalog import Product
from skutag.config import SkutagConfig
from skutag.evidence import EvidenceCollector
from skutag.fusion.config import FusionConfig
from skutag.fusion.model import FusionModel
from skutag.grouping import photo_series, series_summary

CLASSES = ("Arla-Standard-Milk", "Arla-Medium-Fat-Milk", "Banana", "Granny-Smith", "Oatly-Oat-Milk", "Cucumber")


@pytest.fixture(scope="module")
def shots():
    """Real GroceryStore train photos of six products, each photo also present as a second shot: its mirror
    image (a near duplicate, as the next frame of a series is)."""
    from PIL import Image, ImageOps

    rows = grocery_rows("train", CLASSES, per_class=10)
    products = []
    for row in rows:
        products.append(Product(id=row["id"], image=row["image"], category=row["category"]))
        import io

        mirrored = io.BytesIO()
        ImageOps.mirror(Image.open(row["image"]).convert("RGB")).save(mirrored, "JPEG", quality=92)
        products.append(Product(id=row["id"] + "-m", image=mirrored.getvalue(), category=row["category"]))
    evidence = EvidenceCollector(SkutagConfig.load(environ={})).collect(products, ocr=False)
    return evidence, [p.category for p in products]


def test_a_photo_and_its_twin_form_one_series_and_series_never_cross_categories(shots):
    evidence, paths = shots
    groups = photo_series(evidence, paths, similarity=0.9)
    assert all(groups[i] == groups[i + 1] for i in range(0, len(groups), 2))  # each shot with its twin
    for g in np.unique(groups):
        assert len({paths[i] for i in np.flatnonzero(groups == g)}) == 1
    summary = series_summary(groups)
    assert summary["series"] < len(groups) // 2 + 1 and summary["rows_in_series"] == len(groups)


def test_grouped_folds_never_split_a_series_and_make_the_held_out_answers_humbler(shots):
    evidence, paths = shots
    groups = photo_series(evidence, paths, similarity=0.9)
    config = FusionConfig(modalities=("vision",), cv=3, cv_shuffle=True)
    plain = FusionModel(config).fit(evidence, paths)
    grouped = FusionModel(config).fit(evidence, paths, groups=groups)
    folds = grouped.tagger_._folds(np.unique(paths, return_inverse=True)[1], np.random.RandomState(0), groups)
    for fit_rows, held_rows in folds:
        assert not set(groups[fit_rows]) & set(groups[held_rows])
    truth = np.asarray(paths, dtype=object)
    plain_right = (plain.oof_[0] == truth).mean()
    grouped_right = (grouped.oof_[0] == truth).mean()
    # with the twin in the training folds the held-out shot is all but seen: surer and righter than honest
    assert plain_right > grouped_right
    assert plain.oof_[1].mean() > grouped.oof_[1].mean()
    assert dataclasses.replace(config, oof_groups="none").oof_groups == "none"
