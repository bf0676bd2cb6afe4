"""A catalogue larger than ``vision.tail_max_photos`` fits its tail on a sample: every category's share, a floor
per category, whole photo series, the same rows for the same seed; the other photos get the final tail's
embedding. Real GroceryStore photos for the training path."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_fixtures import tail_catalogs, train_tail_bundle

LABELS = np.array(["milk"] * 60 + ["apple"] * 30 + ["juice"] * 6 + ["oat"] * 4, dtype=object)


def test_every_row_when_the_catalogue_is_within_the_cap():
    from skutag.tail_training import tail_sample

    assert list(tail_sample(LABELS, 0, seed=0)) == list(range(len(LABELS)))
    assert list(tail_sample(LABELS, 100, seed=0)) == list(range(len(LABELS)))
    with pytest.raises(ValueError, match="vision.tail_max_photos"):
        tail_sample(LABELS, -1, seed=0)


def test_each_category_keeps_its_share_and_a_floor():
    from skutag.tail_training import tail_sample

    rows = tail_sample(LABELS, 40, seed=0, floor=5)
    counts = {label: int(np.sum(LABELS[rows] == label)) for label in ("milk", "apple", "juice", "oat")}
    # shares of 40: milk 24, apple 12, juice 2.4 -> the floor 5, oat 1.6 -> all 4 it has
    assert counts == {"milk": 24, "apple": 12, "juice": 5, "oat": 4}
    assert list(rows) == sorted(set(rows)) and list(tail_sample(LABELS, 40, seed=0, floor=5)) == list(rows)
    assert list(tail_sample(LABELS, 40, seed=1, floor=5)) != list(rows)


def test_photo_series_are_taken_whole():
    from skutag.tail_training import tail_sample

    series = np.arange(len(LABELS)) // 3  # three photos of each product series, series within one category
    rows = tail_sample(LABELS, 40, seed=0, groups=series, floor=5)
    taken = {int(series[row]) for row in rows}
    assert all(set(np.flatnonzero(series == s)) <= set(rows) for s in taken)
    assert 24 <= int(np.sum(LABELS[rows] == "milk")) < 27  # the quota, then the series that crosses it


@pytest.mark.slow
def test_a_sampled_tail_embeds_the_photos_it_was_not_fitted_on(tmp_path, monkeypatch):
    from dataclasses import replace

    import skutag.tail_training
    from skutag.fusion import bundle as bundles

    monkeypatch.setattr(skutag.tail_training, "TAIL_CLASS_FLOOR", 4)
    catalogs = tail_catalogs(tmp_path / "catalogs")  # 6 photos of each of 4 categories
    version, summary = train_tail_bundle(catalogs["train"], tmp_path / "shop", **{"vision.tail_max_photos": 12,
                                                                                 "fusion.oof_groups": "none"})
    record = version.manifest()["stages"]["vision"]["tail"]
    assert (record["rows"], record["fitted_rows"]) == (24, 16)  # a share of 3 of each category, the floor 4
    assert summary["vision_tail"]["fitted_rows"] == 16
    tail = bundles.load_tail(version)
    stored = np.stack([ev.vision.embedding for ev in bundles.load_training(version).evidence])
    assert np.allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-4)
    # the 8 photos left out of the fit carry the final tail's embedding of their centre crop and mirror (what its
    # graph serves for those views); the 16 others out-of-fold ones, from tails that did not see them either
    crops = replace(tail, views=("center", "flip"))
    final = np.stack(crops.embed([r["image"] for r in catalogs["train_rows"]]))
    gap = np.abs(stored - final).max(axis=1)
    assert np.sum(gap < 1e-3) == 8 and np.sum(gap > 1e-3) == 16, gap
