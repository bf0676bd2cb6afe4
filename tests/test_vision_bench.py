"""The vision benchmark script runs (figures themselves belong to bench/, not to assertions)."""

from __future__ import annotations

import pytest

from bench import bench_vision
from vision_support import retail_photos

pytestmark = pytest.mark.slow


def test_bench_modes_report_rates_and_memory():
    retail_photos()  # skips when the shared photos are absent
    figures = bench_vision.run_mode("int8", "efficientnet-lite0", threads=1, images=3, repeats=1)
    assert {"load_s", "batch1", "batch16", "peak_rss_mb"} <= set(figures)
    assert figures["batch1"] > 0 and figures["peak_rss_mb"] > 0


def test_bench_accuracy_counts_hits():
    report = bench_vision.accuracy(["efficientnet-lite0"], threads=1)
    fp32, int8 = report["efficientnet-lite0 fp32"], report["efficientnet-lite0 int8"]
    assert fp32["n"] == 80 and fp32["top1"] <= fp32["top5"] <= 80
    assert 0 <= int8["top1_agrees_with_fp32"] <= 80
