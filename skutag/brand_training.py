"""Learning how brands are written in a shop's titles (``skutag brands learn``): training side of
``skutag.brand_model``, which only loads the learned model for tagging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MIN_ROWS = 20


def learn_brand_model(catalog_path: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Fit a brand-span model on the catalog rows whose brand is written in their title, check it on a held-out
    share first, save it (default: where ``text.brand_model`` looks) and say what it learned. ValueError when
    too few rows carry a brand in their title."""
    import joblib

    from skutag.brand_model import default_brand_model_path
    from skutag.catalog_io import read_catalog
    from skutag.text.brand_spans import BrandSpanModel, brands_written_in, held_out, span_scores

    catalog = read_catalog(catalog_path)
    pairs = [(p.title, brands_written_in(p.title, p.brand)) for p in catalog.products if p.title and p.brand]
    usable = [(t, b) for t, b in pairs if b]
    if len(usable) < MIN_ROWS:
        raise ValueError(f"{catalog_path}: {len(usable)} rows have a brand written in their title "
                         f"({len(pairs)} have a title and a brand); at least {MIN_ROWS} are needed")
    fit_rows = [r for r in usable if not held_out(r[0])]
    test_rows = [r for r in usable if held_out(r[0])]
    scores: dict = {}
    if len(fit_rows) >= MIN_ROWS and test_rows:
        check = BrandSpanModel().fit([t for t, _ in fit_rows], [b for _, b in fit_rows])
        scores = span_scores(check, [t for t, _ in test_rows], [b for _, b in test_rows])
    model = BrandSpanModel().fit([t for t, _ in usable], [b for _, b in usable])
    out = Path(out) if out else default_brand_model_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out, compress=3)
    return {"model": str(out), "rows": len(usable), "rows_with_brand": len(pairs),
            "skipped_rows": len(catalog.errors), "threshold": model.threshold_,
            "held_out": {"rows": len(test_rows), **scores}}
