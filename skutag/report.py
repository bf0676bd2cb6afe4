"""The ``skutag eval --report DIR`` report: confusion matrix and coverage-vs-precision PNGs, plus a
Markdown and an HTML summary."""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from skutag.fusion.thresholds import coverage_precision_curve
from skutag.fusion.result import TagResult

MAX_CONFUSION_CLASSES = 40


def write_report(report: dict[str, Any], directory: str | Path, title: str = "skutag evaluation") -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    details = report["details"]
    truth: list[str] = details["truth"]
    results: list[TagResult] = details["results"]
    files = {
        "confusion": _confusion_png(truth, results, directory / "confusion_matrix.png"),
        "coverage": _coverage_png(truth, results, report, directory / "coverage_precision.png"),
    }
    metrics = {k: v for k, v in report.items() if k != "details"}
    (directory / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2), encoding="utf-8")
    files["markdown"] = directory / "summary.md"
    files["markdown"].write_text(_markdown(metrics, truth, results, title), encoding="utf-8")
    files["html"] = directory / "summary.html"
    files["html"].write_text(_html(metrics, truth, results, title), encoding="utf-8")
    files["metrics"] = directory / "metrics.json"
    return files


def _cjk_font() -> bool:
    """Use a font with CJK glyphs when one is installed (Chinese category names); False when none is."""
    from matplotlib import font_manager, rcParams

    wanted = ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "SimHei",
              "Droid Sans Fallback", "AR PL UMing CN", "Source Han Sans SC")
    names = {f.name for f in font_manager.fontManager.ttflist}
    rcParams["axes.unicode_minus"] = False
    for name in wanted:
        if name in names:
            rcParams["font.sans-serif"] = [name, "DejaVu Sans"]
            rcParams["font.family"] = "sans-serif"
            return True
    return False


def _leaf(path: str | None) -> str:
    return (path or "∅").split(" > ")[-1]


def _confusion_png(truth: Sequence[str], results: Sequence[TagResult], out: Path) -> Path:
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    has_cjk_font = _cjk_font()
    predicted = [r.path or "(none)" for r in results]
    counts = Counter(truth)
    classes = sorted(counts)
    note = ""
    if len(classes) > MAX_CONFUSION_CLASSES:  # keep the classes with the most errors
        errors = Counter(t for t, p in zip(truth, predicted) if t != p)
        classes = sorted(c for c, _ in (errors + Counter({c: 0 for c in counts})).most_common(MAX_CONFUSION_CLASSES))
        note = f" ({MAX_CONFUSION_CLASSES} classes with the most errors of {len(counts)})"
    keep = [i for i, t in enumerate(truth) if t in classes]
    other = "(other)"
    labels = classes + [other]
    y_true = [truth[i] for i in keep]
    y_pred = [predicted[i] if predicted[i] in classes else other for i in keep]
    matrix = confusion_matrix(y_true, y_pred, labels=labels).astype(float)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = max(6.0, 0.22 * len(labels) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ticks = [_leaf(c) if c != other else other for c in labels]
    if not has_cjk_font and any(not t.isascii() for t in ticks):
        # no font for these names here: number the classes and write the key beside the figure
        key = out.with_name(out.stem + "_classes.txt")
        key.write_text("".join(f"C{i + 1}\t{c}\n" for i, c in enumerate(labels)), encoding="utf-8")
        ticks = [f"C{i + 1}" for i in range(len(labels))]
        note += f"; class key: {key.name}"
    ax.set_xticks(range(len(labels)), ticks, rotation=90, fontsize=6)
    ax.set_yticks(range(len(labels)), ticks, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix, row-normalised{note}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _coverage_png(truth: Sequence[str], results: Sequence[TagResult], report: dict[str, Any], out: Path) -> Path:
    import matplotlib.pyplot as plt

    confidence = [r.confidence if r.path else 0.0 for r in results]
    correct = [r.path == t for r, t in zip(results, truth)]
    thresholds, coverage, precision = coverage_precision_curve(confidence, correct)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(coverage, precision, label="one global threshold")
    if report.get("auto_precision") is not None:
        interval = report.get("auto_precision_interval") or [report["auto_precision"]] * 2
        ax.errorbar([report.get("auto_rate", 0)], [report["auto_precision"]], fmt="o", color="C3", zorder=3,
                    yerr=[[report["auto_precision"] - interval[0]], [interval[1] - report["auto_precision"]]],
                    capsize=3, label="operating point (per-class thresholds, 95% interval)")
    for target in (0.6,):
        idx = np.flatnonzero(thresholds >= target)
        if len(idx):
            ax.scatter([coverage[idx[-1]]], [precision[idx[-1]]], color="C2", zorder=3, label="global 60% threshold")
    target = report.get("target_precision", 0.95)
    ax.axhline(target, color="grey", lw=0.8, ls="--", label=f"target {target:.0%} precision")
    ax.set_xlabel("coverage (share auto-tagged)")
    ax.set_ylabel("precision of auto-tags")
    ax.set_ylim(max(0.0, min(precision.min() if len(precision) else 0, 0.5) - 0.02), 1.005)
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Coverage vs precision", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _worst_classes(truth: Sequence[str], results: Sequence[TagResult], k: int = 10) -> list[tuple[str, int, float]]:
    totals, hits = Counter(truth), Counter(t for t, r in zip(truth, results) if r.path == t)
    rows = [(c, n, hits[c] / n) for c, n in totals.items()]
    return sorted(rows, key=lambda x: (x[2], -x[1]))[:k]


def _top_confusions(truth: Sequence[str], results: Sequence[TagResult], k: int = 10) -> list[tuple[str, str, int]]:
    pairs = Counter((t, r.path or "(none)") for t, r in zip(truth, results) if r.path != t)
    return [(t, p, n) for (t, p), n in pairs.most_common(k)]


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    slices = metrics.get("slices", {})
    keys = [k for k in ("n", "accuracy", "macro_f1", "level_accuracy", "auto_rate", "auto_precision",
                        "review_rate", "manual_rate") if k in metrics]
    keys += [k for k in metrics if k.startswith("auto_rate_at_") or k.startswith("threshold_at_")]
    rows = []
    for key in keys:
        rows.append((key, _fmt(metrics.get(key)), _fmt(slices.get("branded", {}).get(key)),
                     _fmt(slices.get("unbranded", {}).get(key))))
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return " / ".join(_fmt(v) for v in value)
    return "n/a" if value is None else str(value)


def _markdown(metrics: dict[str, Any], truth, results, title: str) -> str:
    lines = [f"# {title}", "", f"Model: `{metrics.get('model')}` — {metrics.get('n')} products, "
             f"{metrics.get('seconds')} s, OCR gate: `{json.dumps(metrics.get('ocr_gate'))}`", "",
             "| metric | all | branded | unbranded |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in _metric_rows(metrics)]
    lines += ["", f"Expected calibration error: {metrics.get('ece')}", "",
              "![confusion matrix](confusion_matrix.png)", "", "![coverage vs precision](coverage_precision.png)", "",
              "## Hardest classes", "", "| class | n | accuracy |", "|---|---|---|"]
    lines += [f"| {c} | {n} | {a:.3f} |" for c, n, a in _worst_classes(truth, results)]
    lines += ["", "## Most frequent confusions", "", "| true | predicted | n |", "|---|---|---|"]
    lines += [f"| {t} | {p} | {n} |" for t, p, n in _top_confusions(truth, results)]
    return "\n".join(lines) + "\n"


def _html(metrics: dict[str, Any], truth, results, title: str) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{e(a)}</td><td>{e(b)}</td><td>{e(c)}</td><td>{e(d)}</td></tr>"
                   for a, b, c, d in _metric_rows(metrics))
    worst = "".join(f"<tr><td>{e(c)}</td><td>{n}</td><td>{a:.3f}</td></tr>" for c, n, a in _worst_classes(truth, results))
    conf = "".join(f"<tr><td>{e(t)}</td><td>{e(p)}</td><td>{n}</td></tr>" for t, p, n in _top_confusions(truth, results))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px}}img{{max-width:100%}}</style></head><body>
<h1>{e(title)}</h1><p>Model <code>{e(str(metrics.get('model')))}</code>, {metrics.get('n')} products,
{metrics.get('seconds')} s; OCR gate <code>{e(json.dumps(metrics.get('ocr_gate')))}</code>;
expected calibration error {metrics.get('ece')}.</p>
<table><tr><th>metric</th><th>all</th><th>branded</th><th>unbranded</th></tr>{rows}</table>
<h2>Confusion matrix</h2><img src="confusion_matrix.png" alt="confusion matrix">
<h2>Coverage vs precision</h2><img src="coverage_precision.png" alt="coverage vs precision">
<h2>Hardest classes</h2><table><tr><th>class</th><th>n</th><th>accuracy</th></tr>{worst}</table>
<h2>Most frequent confusions</h2><table><tr><th>true</th><th>predicted</th><th>n</th></tr>{conf}</table>
</body></html>
"""
