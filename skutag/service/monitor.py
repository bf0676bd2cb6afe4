"""The quality monitor: auto rate and audited precision per day, per-category precision from audits (with 95%
Clopper-Pearson intervals, ``skutag.fusion.thresholds.precision_interval``), corrections per day and the model
versions on the same time axis; and drift: the histogram of the served model's confidences over the last 7 days
against the one of its out-of-fold confidences on its training rows, with their total variation distance
(``skutag.fusion.drift``). ``quality`` gives the numbers (``GET /v1/stats``), ``charts`` draws them as SVG
markup for the stats page (no script, no inline style: the classes are in static/app.css)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from markupsafe import Markup, escape

from skutag.fusion.drift import DRIFT_BINS, ConfidenceHistogram, total_variation
from skutag.fusion.thresholds import precision_interval

if TYPE_CHECKING:
    from skutag.service.engine import TaggingService

W, H, LEFT, RIGHT, TOP, BOTTOM = 640, 180, 40, 10, 12, 26
DRIFT_DAYS = 7  # "this week": today and the 6 days before (UTC)


def served_quality(service: TaggingService, days: int = 30) -> dict[str, Any]:
    """``quality`` of the service's store, its drift measured for the model it serves now."""
    tagger = service.tagger
    return quality(service.store, days, training=tagger.training_confidences, model_version=tagger.model_version)


def quality(store, days: int = 30, *, training: ConfidenceHistogram | None = None,
            model_version: str | None = None) -> dict[str, Any]:
    """The monitor's numbers over the last ``days`` days (UTC). ``training``: the served model's training
    confidences (``Tagger.training_confidences``); ``model_version``: the served model, whose answers of the
    last ``DRIFT_DAYS`` days the drift compares with them (None: every model's answers)."""
    today = dt.datetime.now(dt.timezone.utc).date()
    start = today - dt.timedelta(days=days - 1)
    week_start = today - dt.timedelta(days=DRIFT_DAYS - 1)
    since = dt.datetime.combine(min(start, week_start), dt.time(), tzinfo=dt.timezone.utc)
    rows = store.quality_rows(since)
    day_keys = [(start + dt.timedelta(days=i)).isoformat() for i in range(days)]
    per_day = {d: {"day": d, "answers": 0, "auto": 0, "audited": 0, "audited_correct": 0, "corrections": 0}
               for d in day_keys}

    def bucket(when) -> dict | None:
        return per_day.get(when.date().isoformat())

    week: list[float] = []
    for when, decision, confidence, version in rows["answers"]:
        if (b := bucket(when)) is not None:
            b["answers"] += 1
            b["auto"] += decision == "auto"
        if when.date() >= week_start and (model_version is None or version == model_version):
            week.append(confidence)
    categories: dict[str, list[int]] = {}
    for when, old, new in rows["audits"]:
        if (b := bucket(when)) is not None:
            b["audited"] += 1
            b["audited_correct"] += old == new
        counts = categories.setdefault(old or "(none)", [0, 0])
        counts[0] += old == new
        counts[1] += 1
    for (when,) in rows["corrections"]:
        if (b := bucket(when)) is not None:
            b["corrections"] += 1
    for b in per_day.values():
        b["auto_rate"] = b["auto"] / b["answers"] if b["answers"] else None
        b["audited_precision"] = b["audited_correct"] / b["audited"] if b["audited"] else None
    per_category = []
    for path, (correct, total) in sorted(categories.items(), key=lambda kv: (-kv[1][1], kv[0])):
        low, high = precision_interval(correct, total)
        per_category.append({"path": path, "audited": total, "correct": correct, "precision": correct / total,
                             "low": low, "high": high})
    models = [{"version": m.version, "status": m.status, "created_at": m.created_at.isoformat(),
               "promoted_at": m.promoted_at.isoformat() if m.promoted_at else None} for m in store.list_models()]
    return {"days": days, "per_day": list(per_day.values()), "per_category": per_category, "models": models,
            "drift": drift(week, training, model_version)}


def drift(confidences: list[float], training: ConfidenceHistogram | None, model_version: str | None
          ) -> dict[str, Any]:
    """This week's confidence histogram, the training one (None when the served model keeps none) and their
    total variation distance (None unless both have counted something)."""
    week = ConfidenceHistogram.of(confidences, training.bins if training else DRIFT_BINS)
    return {"days": DRIFT_DAYS, "model_version": model_version, "this_week": week.to_json(),
            "training": training.to_json() if training else None,
            "total_variation": total_variation(week, training) if training else None}


# ---------------------------------------------------------------------------------------------- SVG charts
def _x(i: int, n: int) -> float:
    return LEFT + (W - LEFT - RIGHT) * (i + 0.5) / max(n, 1)


def _y(value: float, top: float) -> float:
    return TOP + (H - TOP - BOTTOM) * (1 - (value / top if top else 0))


def _frame(title: str, ident: str, body: list[str], days: list[str], top: float, fmt, empty: bool,
           models: list[dict]) -> Markup:
    n = len(days)
    parts = [f'<svg class="chart" id="{ident}" role="img" viewBox="0 0 {W} {H}" width="100%" '
             f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for frac in (0, 0.5, 1):
        y = _y(top * frac, top)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="axis" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(top * frac))}'
                     f'</text>')
    for i in (0, n // 2, n - 1) if n else ():
        parts.append(f'<text class="axis" x="{_x(i, n):.1f}" y="{H - 8}" text-anchor="middle">{days[i][5:]}</text>')
    index = {d: i for i, d in enumerate(days)}
    for m in models:  # model versions on the time axis: a marker where each was created (promoted: solid)
        i = index.get(m["created_at"][:10])
        if i is not None:
            x = _x(i, n)
            parts.append(f'<line class="model {escape(m["status"])}" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" '
                         f'y2="{H - BOTTOM}"><title>model {escape(m["version"])} ({escape(m["status"])})</title></line>')
    parts.extend(body)
    if empty:
        parts.append(f'<text class="empty-chart" x="{W / 2}" y="{H / 2}" text-anchor="middle">no data yet</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _series(per_day: list[dict], key: str, css: str, top: float) -> list[str]:
    n, points, out = len(per_day), [], []
    for i, b in enumerate(per_day):
        if b[key] is not None:
            points.append((_x(i, n), _y(b[key], top), b))
    if len(points) > 1:
        out.append(f'<polyline class="line {css}" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)}"/>')
    for x, y, b in points:
        out.append(f'<circle class="dot {css}" cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{b["day"]}: '
                   f'{b[key] * 100:.1f}%</title></circle>')
    return out


def charts(q: dict[str, Any]) -> dict[str, Markup]:
    per_day, models = q["per_day"], q["models"]
    days = [b["day"] for b in per_day]
    pct = lambda v: f"{v * 100:.0f}%"  # noqa: E731
    rates = _series(per_day, "auto_rate", "auto", 1.0) + _series(per_day, "audited_precision", "precision", 1.0)
    quality_chart = _frame("Auto rate and audited precision per day", "chart-quality", rates, days, 1.0, pct,
                           not rates, models)
    top = max([b["corrections"] for b in per_day] + [1])
    bars, n = [], len(per_day)
    width = (W - LEFT - RIGHT) / max(n, 1) * 0.7
    for i, b in enumerate(per_day):
        if b["corrections"]:
            y = _y(b["corrections"], top)
            bars.append(f'<rect class="bar" x="{_x(i, n) - width / 2:.1f}" y="{y:.1f}" width="{width:.1f}" '
                        f'height="{H - BOTTOM - y:.1f}"><title>{b["day"]}: {b["corrections"]}</title></rect>')
    corrections_chart = _frame("Corrections per day", "chart-corrections", bars, days, top, lambda v: f"{v:.0f}",
                               not bars, models)
    return {"quality": quality_chart, "corrections": corrections_chart,
            "categories": _categories(q["per_category"]), "drift": _drift(q["drift"])}


def _categories(rows: list[dict]) -> Markup:
    """Per-category audited precision: a dot and its 95% interval per category (the 20 most audited)."""
    rows = rows[:20]
    row_h, label_w = 22, 260
    height = TOP + BOTTOM + row_h * max(len(rows), 1)
    span = W - label_w - RIGHT
    parts = [f'<svg class="chart" id="chart-categories" role="img" viewBox="0 0 {W} {height}" width="100%" '
             f'xmlns="http://www.w3.org/2000/svg" aria-label="Audited precision per category">'
             f'<title>Audited precision per category (95% interval)</title>']
    for frac in (0, 0.5, 1):
        x = label_w + span * frac
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{height - BOTTOM}"/>'
                     f'<text class="axis" x="{x:.1f}" y="{height - 8}" text-anchor="{"end" if frac == 1 else "middle"}">'
                     f'{frac * 100:.0f}%</text>')
    for i, r in enumerate(rows):
        y = TOP + row_h * (i + 0.5)
        label = r["path"] if len(r["path"]) <= 40 else "…" + r["path"][-39:]
        parts.append(f'<text class="label" x="{label_w - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>'
                     f'<line class="interval" x1="{label_w + span * r["low"]:.1f}" x2="{label_w + span * r["high"]:.1f}"'
                     f' y1="{y:.1f}" y2="{y:.1f}"/><circle class="dot precision" cx="{label_w + span * r["precision"]:.1f}"'
                     f' cy="{y:.1f}" r="4"><title>{escape(r["path"])}: {r["correct"]}/{r["audited"]} '
                     f'({r["low"] * 100:.0f}–{r["high"] * 100:.0f}%)</title></circle>')
    if not rows:
        parts.append(f'<text class="empty-chart" x="{W / 2}" y="{height / 2}" text-anchor="middle">no audits yet</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _drift(d: dict[str, Any]) -> Markup:
    """This week's confidence histogram over the training one (shares per bin, both on one axis); "no data yet"
    with the reason while either is missing."""
    week, training = d["this_week"], d["training"]
    title = f"Confidence of the last {d['days']} days' answers against the training rows'"
    parts = [(f'<svg class="chart" id="chart-drift" role="img" viewBox="0 0 {W} {H}" width="100%" '
              f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}"><title>{escape(title)}</title>')]
    missing = (f"no answers of {d['model_version'] or 'the model'} in the last {d['days']} days" if not week["n"]
               else "the served model keeps no training confidences" if training is None else None)
    shown = [] if missing else [("training", training, "training rows"), ("week", week, "answers this week")]
    top = max([f for _, h, _ in shown for f in h["fractions"]], default=0.0) or 1.0
    for frac in (0, 0.5, 1):
        y = _y(top * frac, top)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="axis" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{top * frac * 100:.0f}%'
                     f'</text>')
    span = W - LEFT - RIGHT
    for value in (0, 0.5, 1):
        parts.append(f'<text class="axis" x="{LEFT + span * value:.1f}" y="{H - 8}" text-anchor="middle">'
                     f'{value:g}</text>')
    for css, hist, what in shown:
        bins = len(hist["fractions"])
        for i, share in enumerate(hist["fractions"]):
            if share <= 0:
                continue
            y = _y(share, top)
            parts.append(f'<rect class="hist {css}" x="{LEFT + span * i / bins:.1f}" y="{y:.1f}" '
                         f'width="{span / bins:.1f}" height="{H - BOTTOM - y:.1f}"><title>{i / bins:.2f}–'
                         f'{(i + 1) / bins:.2f}: {share * 100:.1f}% of {hist["n"]} {what}</title></rect>')
    if missing:
        parts.append(f'<text class="empty-chart" x="{W / 2}" y="{H / 2}" text-anchor="middle">no data yet</text>'
                     f'<text class="label" x="{W / 2}" y="{H / 2 + 18}" text-anchor="middle">{escape(missing)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
