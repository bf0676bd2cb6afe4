"""Product tagging commands: ``train``, ``tag``, ``eval`` and ``demo`` (``retrain`` and ``calibrate``:
``skutag.commands.retraining``).

    skutag train CATALOG --out MODEL_DIR
    skutag tag CATALOG_OR_IMAGE [--title T] [--price P] [--model MODEL_DIR] [--json]
    skutag eval CATALOG [--model MODEL_DIR] [--json] [--report DIR]
    skutag demo                       # tag the bundled example products end to end
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from skutag.cli import UserFacingError
from skutag.commands.flags import load_config

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
CATALOG_SUFFIXES = {".jsonl", ".ndjson", ".json", ".csv", ".tsv"}
def examples_catalog() -> Path:
    """The bundled example products (MIT photos with their licenses), shipped inside the package."""
    from importlib.resources import files

    return Path(str(files("skutag.examples").joinpath("products.jsonl")))
GATES = ("auto", "always", "never")


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_train(subparsers)
    _register_tag(subparsers)
    _register_eval(subparsers)
    _register_demo(subparsers)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ocr-gate", choices=GATES, help="when to run OCR (default: fusion.ocr_gate = auto)")
    parser.add_argument("--backbone", help="vision backbone (default: vision.backbone)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _price_arg(text: str) -> float | None:
    """``--price`` checked as the API and a catalog's price column are (``skutag.policy``; empty: no price)."""
    from skutag.policy.fields import InvalidInput, check_price

    try:
        return check_price(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL",
                        help="answer as `skutag serve` on this product database would (SQLite path or URL): its "
                             "edited brand lexicon, renamed categories, label-map overrides and review whitelist")


def _register_train(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a fusion model on a labelled catalog",
                              description="Train the fusion model on a catalog (JSONL/CSV with a category per row) "
                              "and save it as a new version in MODEL_DIR.")
    p.add_argument("catalog", type=Path, metavar="CATALOG")
    p.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR")
    p.add_argument("--modalities", help="comma list from vision,ocr,title,price (default: all)")
    p.add_argument("--cv", type=int, help="folds for the out-of-fold stack (default: fusion.cv = 5)")
    p.add_argument("--calibration", type=Path, metavar="CAL_CATALOG",
                   help="separate labelled catalog to fit the temperature and per-class auto thresholds on "
                        "(default: the training rows' out-of-fold answers)")
    p.add_argument("--vision-tail", action="store_true",
                   help="fine-tune the backbone's last blocks on these categories (vision.tail; minutes per "
                        "thousand photos on a CPU, the bundle keeps the tail and serving runs it)")
    p.add_argument("--json", action="store_true", help="print the training summary as JSON")
    _common(p)
    p.set_defaults(func=run_train)


def _register_tag(subparsers) -> None:
    p = subparsers.add_parser("tag", help="tag products: label, category path, confidence, decision",
                              description="Tag a catalog file, one photo, a folder of photos, or a title alone. "
                              "Without --model: cold start on the bundled taxonomy, label map and brand lexicon.")
    p.add_argument("source", nargs="?", type=Path, metavar="CATALOG_OR_IMAGE")
    p.add_argument("--title", help="product title (with one photo, or alone)")
    p.add_argument("--price", type=_price_arg, help="product price (with one photo or a title)")
    p.add_argument("--model", type=Path, metavar="MODEL_DIR", help="trained model directory (default: cold start)")
    p.add_argument("--json", action="store_true", help="one JSON object per product")
    p.add_argument("--out", type=Path, help="also write results to this .jsonl or .csv file")
    p.add_argument("--no-audit", action="store_true", help="do not send a random audit sample to review")
    _db_option(p)
    _common(p)
    p.set_defaults(func=run_tag)


def _register_eval(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a model on a labelled catalog",
                              description="Tag a labelled catalog and score the answers: accuracy, macro-F1, "
                              "per-level accuracy, auto-rate and auto-precision, overall and for branded / "
                              "unbranded rows. Without --model: the cold-start tagger.")
    p.add_argument("catalog", type=Path, metavar="CATALOG")
    p.add_argument("--model", type=Path, metavar="MODEL_DIR")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--report", type=Path, metavar="DIR", help="write confusion matrix, coverage curve and summary")
    _db_option(p)
    _common(p)
    p.set_defaults(func=run_eval)


def _register_demo(subparsers) -> None:
    p = subparsers.add_parser("demo", help="tag the bundled example products end to end",
                              description="Tag examples/products.jsonl (photos, titles, prices) with the default "
                              "models: vision, OCR, title and price evidence fused into a category path and a decision.")
    p.add_argument("--model", type=Path, metavar="MODEL_DIR", help="trained model (default: cold start)")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(func=run_demo)


# ---------------------------------------------------------------------- helpers
TAGGING_FLAGS = {"fusion.ocr_gate": "ocr_gate", "vision.backbone": "backbone"}


def _config(args: argparse.Namespace, **extra: Any):
    """``extra``: dotted config keys -> values (``{"fusion.cv": 3}``)."""
    config = load_config(args, TAGGING_FLAGS)
    if not extra:
        return config
    try:
        return config.with_overrides(extra)
    except ValueError as exc:  # ConfigError included
        raise UserFacingError(str(exc)) from None


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn expected failures (bad files, incompatible bundles, bad config) into clear CLI errors."""
    from skutag.fusion.bundle import BundleError
    from skutag.catalog_io import CatalogError

    try:
        yield
    except (CatalogError, BundleError, FileNotFoundError) as exc:
        raise UserFacingError(str(exc)) from None
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None


def _progress(args: argparse.Namespace, total: int, label: str):
    """A callable advancing a progress bar on stderr (a no-op when not a terminal or --no-progress)."""
    if getattr(args, "no_progress", False) or total < 32 or not sys.stderr.isatty():
        return None, None
    from rich.progress import Progress

    bar = Progress(transient=True)
    bar.start()
    task = bar.add_task(label, total=total)
    return (lambda n: bar.advance(task, n)), bar


def _check_output(path: Path | None, flag: str, *, folder: bool = False) -> None:
    """Refuse an output path that cannot be written before any work is done (``folder``: a directory)."""
    if path is None:
        return
    if path.exists() and path.is_dir() != folder:
        kind = "a folder; give a file name" if path.is_dir() else "a file; give a folder"
        raise UserFacingError(f"{flag}: {path} is {kind}")
    existing = next((parent for parent in path.parents if parent.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserFacingError(f"{flag}: {existing} is a file, so {path} cannot be created")
    if existing is not None and not os.access(existing, os.W_OK):
        raise UserFacingError(f"{flag}: cannot write in {existing}")


def _report_row_errors(catalog) -> None:
    for error in catalog.errors:
        print(f"skutag: {catalog.path}: {error} (row skipped)", file=sys.stderr)


def _report_unreadable(catalog, problems: Sequence[str]) -> None:
    for problem in problems:
        print(f"skutag: {catalog.path}: row {problem} (trained without it)", file=sys.stderr)


def _load_pipeline(config, model_dir: Path | None):
    from skutag.pipeline import load_pipeline

    return load_pipeline(config=config, model_dir=model_dir)


def _service_rules(args: argparse.Namespace, config, pipeline):
    """With ``--db``: the pipeline reads brands with the database's edited lexicon, and the answers go
    through its service rules (``skutag.policy.rules``), as the HTTP service on that database answers."""
    if not getattr(args, "db", None):
        return None
    from skutag.queue.store_sink import StoreSink, StoreUnavailableError

    try:
        sink = StoreSink(args.db, whitelist=tuple(config.decision.always_review))
    except StoreUnavailableError as exc:
        raise UserFacingError(str(exc)) from None
    try:
        sink.follow_lexicon(pipeline)
        return sink.rules()
    finally:
        sink.close()


def _products_from(args: argparse.Namespace) -> tuple[list, Any]:
    from skutag.catalog import Product
    from skutag.catalog_io import read_catalog

    source: Path | None = args.source
    if source is None:
        if not args.title:
            raise UserFacingError("give a catalog file, a photo or a folder of photos, or --title")
        return [Product(id="1", title=args.title, price=args.price)], None
    if not source.exists():
        raise UserFacingError(f"no such file or folder: {source}")
    if source.is_dir():
        if args.title or args.price is not None:
            raise UserFacingError("--title/--price go with one photo; a folder's photos have none of their own")
        photos = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not photos:
            raise UserFacingError(f"no photos found in {source}")
        return [Product(id=str(p.relative_to(source)), image=str(p), title=args.title, price=args.price)
                for p in photos], None
    if source.suffix.lower() in CATALOG_SUFFIXES:
        if args.title or args.price is not None:
            raise UserFacingError("--title/--price go with one photo; a catalog has its own columns")
        catalog = read_catalog(source)
        if not catalog.products and not catalog.errors:
            raise UserFacingError(f"{source}: no products (the file has no rows)")
        return catalog.products, catalog
    return [Product(id=source.name, image=str(source), title=args.title, price=args.price)], None


def _print_human(results: Sequence, out=None) -> None:
    out = out or sys.stdout
    for r in results:
        if r.path is None:
            print(f"{r.id}: ✗ {r.decision.value} — {r.error or '; '.join(r.reasons)}", file=out)
            continue
        why = ", ".join(f"{k} {v:.0%}" for k, v in sorted(r.contributions.items(), key=lambda kv: -kv[1]))
        print(f"{r.id}: {r.path}  ({r.confidence:.1%})  → {r.decision.value}" + (f"  [{why}]" if why else ""), file=out)
        if r.alternatives:
            alts = "; ".join(f"{a.path} ({a.confidence:.1%})" for a in r.alternatives[:2])
            print(f"    also: {alts}", file=out)
        if r.error:
            print(f"    note: {r.error}", file=out)


def _tag_all(pipeline, products: Sequence, args: argparse.Namespace, audit: bool = True) -> list:
    results = []
    advance, bar = _progress(args, len(products), "tagging")
    try:
        for start in range(0, len(products), 32):
            chunk = products[start:start + 32]
            results.extend(pipeline.tag_batch(chunk, audit=audit))
            if advance:
                advance(len(chunk))
    finally:
        if bar is not None:
            bar.stop()
    return results


# ---------------------------------------------------------------------- commands
def run_train(args: argparse.Namespace) -> int:
    from skutag.vision.heap import return_freed_memory
    from skutag.training import train_catalog

    _check_output(args.out, "--out", folder=True)
    extra: dict[str, Any] = {}
    if args.modalities:
        extra["fusion.modalities"] = _modalities_arg(args.modalities)
    if args.cv:
        extra["fusion.cv"] = args.cv
    if args.vision_tail:
        extra["vision.tail"] = True
    config = _config(args, **extra)
    if not config.vision.tail:  # freed fold-fit buffers leave the RSS; not with a tail: torch's training steps
        return_freed_memory()  # allocate and free mid-size tensors, and run faster with them kept in the heap
    with _user_errors():
        version, summary, catalog = train_catalog(args.catalog, args.out, config, calibration_path=args.calibration)
    _report_row_errors(catalog)
    _report_unreadable(catalog, summary["unreadable_inputs"])
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        m = summary["metrics"]
        print(f"trained {version.path} on {summary['rows']} rows, {summary['classes']} categories, "
              f"modalities {', '.join(m['modalities'])}")
        print(f"held-out (out-of-fold) accuracy {m['oof_accuracy']:.3f}, calibration error {m['oof_ece']:.3f}, "
              f"fit {m['fit_seconds']:.1f} s")
        if m.get("expected_auto"):
            print(f"expect {_expectation(m['expected_auto'], config.decision.target_precision)}")
        if summary.get("vision_tail"):
            t = summary["vision_tail"]
            sampled = (f", fitted on {t['fitted_rows']} of {t['rows']} photos (vision.tail_max_photos)"
                       if t.get("fitted_rows", t["rows"]) < t["rows"] else "")
            print(f"vision tail: cut {t['cut']}, {t['epochs']} epochs, {t['train_views']} views, {t['folds']} folds"
                  f"{sampled}; activations {t['seconds']['activations']} s, fit {t['seconds']['fit']} s")
    return 0


def _modalities_arg(text: str) -> tuple[str, ...]:
    from skutag.fusion.config import MODALITIES

    chosen = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in chosen if m not in MODALITIES]
    if unknown or not chosen:
        raise UserFacingError(f"--modalities: {', '.join(unknown) or 'none given'}; choose from {', '.join(MODALITIES)}")
    return chosen


def run_tag(args: argparse.Namespace) -> int:
    from skutag.catalog_write import result_row, write_results

    config = _config(args)
    _check_output(args.out, "--out")
    with _user_errors():
        products, catalog = _products_from(args)
        pipeline = _load_pipeline(config, args.model)
        rules = _service_rules(args, config, pipeline)
        # with --db, as the service answers: its audit sample is kept in the database, not in the decision
        results = _tag_all(pipeline, products, args, audit=not (args.no_audit or args.db))
    if rules is not None:
        results = [rules.apply(r) for r in results]
    if catalog is not None:
        _report_row_errors(catalog)
    if args.json:
        for r in results:
            print(json.dumps(result_row(r), ensure_ascii=False))
    else:
        _print_human(results)
    if args.out:
        write_results(results, args.out, full=True)
    failed = any(r.error and r.path is None for r in results) or (catalog is not None and catalog.errors)
    return 1 if failed else 0


def run_eval(args: argparse.Namespace) -> int:
    from skutag.evaluation import evaluate_catalog

    config = _config(args)
    _check_output(args.report, "--report", folder=True)
    with _user_errors():
        pipeline = _load_pipeline(config, args.model)
        report = evaluate_catalog(pipeline, args.catalog, ocr_gate=args.ocr_gate,
                                  rules=_service_rules(args, config, pipeline))
    _report_row_errors(report["details"]["catalog"])
    if args.report:
        from skutag.report import write_report

        files = write_report(report, args.report, title=f"skutag eval: {args.catalog.name}")
        print(f"report: {files['html']} ({files['markdown'].name}, {files['confusion'].name}, "
              f"{files['coverage'].name})", file=sys.stderr)
    metrics = {k: v for k, v in report.items() if k != "details"}
    if args.json:
        print(json.dumps(metrics, ensure_ascii=False))
    else:
        key = next(k for k in metrics if k.startswith("auto_rate_at_"))
        print(f"{metrics['n']} products — accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, "
              f"levels {' / '.join(f'{x:.3f}' for x in metrics['level_accuracy'])}")
        interval = metrics.get("auto_precision_interval")
        print(f"auto {metrics['auto_rate']:.1%} at precision {_precision(metrics['auto_precision'])}"
              + (f" (95% interval {interval[0]:.3f}-{interval[1]:.3f})" if interval else "")
              + f"; {key.replace('_', ' ')}: {metrics[key]:.1%}")
        for name, s in metrics["slices"].items():
            print(f"  {name:9s} n={s['n']:5d} accuracy {s['accuracy']:.3f} auto {s['auto_rate']:.1%} "
                  f"precision {_precision(s['auto_precision'])}")
    return 0


def _expectation(expected: dict, target: float) -> str:
    """What the auto thresholds promise, from the held-out answers they were chosen on."""
    if expected.get("expected_precision") is None:
        return f"no auto-tags: no class reaches the {target:.0%} precision target on held-out answers (all to review)"
    low, high = expected["precision_interval"]
    return (f"auto-tags on {expected['expected_auto_rate']:.1%} of new products at precision "
            f"{expected['expected_precision']:.3f} (95% interval {low:.3f}-{high:.3f}; target {target:.0%}); "
            f"{len(expected['never_auto'])} categories always to review")


def _precision(value: float | None) -> str:
    return "n/a (nothing auto-tagged)" if value is None else f"{value:.3f}"


def run_demo(args: argparse.Namespace) -> int:
    from skutag.catalog_io import read_catalog
    from skutag.catalog_write import result_row

    examples = examples_catalog()
    if not examples.is_file():
        raise UserFacingError(f"the example products are missing: {examples}")
    config = _config(args)
    with _user_errors():
        catalog = read_catalog(examples)
        pipeline = _load_pipeline(config, args.model)
        results = _tag_all(pipeline, catalog.products, args, audit=False)
    _report_row_errors(catalog)
    if args.json:
        for r in results:
            print(json.dumps(result_row(r), ensure_ascii=False))
        return 0
    print(f"skutag demo — {len(results)} example products ({examples.parent}), "
          f"model: {pipeline.model_version}\n")
    for product, r in zip(catalog.products, results):
        shown = [f"photo {Path(product.image).name}" if product.image else "no photo",
                 f"title “{product.title}”" if product.title else "no title",
                 f"price {product.price:g}" if product.price is not None else "no price"]
        print(f"[{product.id}] {' · '.join(shown)}")
        _print_human([r])
        print()
    stats = pipeline.gate_stats
    print(f"OCR gate: read {stats.ran} of {stats.candidates} photos "
          f"({stats.skipped} skipped because the answer could not change)")
    return 0
