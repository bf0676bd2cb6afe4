"""Model upkeep commands: ``retrain`` (corrections folded in, incrementally when the model allows) and
``calibrate`` (temperature and auto thresholds fitted on a held-out labelled catalog).

    skutag retrain --model MODEL_DIR --corrections FILE --out NEW_DIR [--full]
    skutag calibrate --model MODEL_DIR CAL_CATALOG [--out NEW_DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# the CLI helpers every command module shares (output checks, config, error reporting)
from skutag.commands.tagging import (
    _check_output,
    _common,
    _config,
    _report_row_errors,
    _report_unreadable,
    _user_errors,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    register_retrain(subparsers)
    register_calibrate(subparsers)


def register_retrain(subparsers) -> None:
    p = subparsers.add_parser("retrain", help="retrain a model with corrected rows",
                              description="Add corrections (catalog rows with the right category; a row whose id "
                              "is in the training data replaces it) and retrain. --out may be MODEL_DIR itself "
                              "(a new version there) or a new directory.")
    p.add_argument("--model", type=Path, required=True, metavar="MODEL_DIR")
    p.add_argument("--corrections", type=Path, metavar="FILE",
                   help="catalog rows with the right category (without it: the kept rows are fitted again, e.g. "
                        "after upgrading scikit-learn)")
    p.add_argument("--out", type=Path, required=True, metavar="NEW_DIR")
    p.add_argument("--full", action="store_true",
                   help="fit the model again from scratch (default: a model that can take the corrections "
                        "incrementally is updated, until fusion.full_refit_share of its rows were corrected)")
    p.add_argument("--renamed", type=Path, metavar="FILE",
                   help="JSON object old category path -> new: the model's training rows are relabelled (default: "
                        "the renames `skutag taxonomy update` recorded beside the managed tree)")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(func=run_retrain)


def register_calibrate(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="fit temperature and auto thresholds on a separate labelled catalog",
                              description="Calibrate the current version of MODEL_DIR on CAL_CATALOG (labelled rows "
                                          "the model was not trained on) and save it as a new version.")
    p.add_argument("calibration", type=Path, metavar="CAL_CATALOG")
    p.add_argument("--model", type=Path, required=True, metavar="MODEL_DIR")
    p.add_argument("--out", type=Path, metavar="NEW_DIR", help="where the new version goes (default: MODEL_DIR)")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(func=run_calibrate)


def run_retrain(args: argparse.Namespace) -> int:
    from skutag.vision.heap import return_freed_memory
    from skutag.pipeline import managed_path_aliases
    from skutag.training import retrain_bundle
    from skutag.taxonomy.aliases import load_aliases

    config = _config(args)
    _check_output(args.out, "--out", folder=True)
    return_freed_memory()  # a full refit's freed buffers must not add up in the peak RSS
    with _user_errors():
        if args.renamed and not args.renamed.is_file():
            raise FileNotFoundError(f"--renamed: no such file {args.renamed}")
        renamed = load_aliases(args.renamed) if args.renamed else managed_path_aliases()
        version, summary, corrections = retrain_bundle(args.model, args.corrections or [], args.out, config,
                                                       renamed=renamed, full_refit=args.full)
    _report_row_errors(corrections)
    _report_unreadable(corrections, summary["unreadable_inputs"])
    for path in summary["new_categories"]:
        print(f"skutag: note: {path} is a new category (the model had no row of it)", file=sys.stderr)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        c = summary["corrections"]
        print(f"retrained {version.path}: {c['rows']} corrections ({c['replaced']} replaced, {c['added']} added), "
              f"{summary['rows']} rows, held-out accuracy {summary['metrics']['oof_accuracy']:.3f}, "
              f"{summary['seconds']['total']:.1f} s")
        r = summary["retraining"]
        print(f"{r['kind']} retraining: {r['why']}")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from skutag.training import calibrate_bundle

    config = _config(args)
    with _user_errors():
        _check_output(args.out, "--out", folder=True)
        version, summary, catalog = calibrate_bundle(args.model, args.calibration, args.out or args.model, config)
    _report_row_errors(catalog)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        c = summary["calibration"]
        print(f"calibrated {version.path} on {c['rows']} rows: temperature {c['temperature_before']:.3f} -> "
              f"{c['temperature']:.3f}, accuracy {c['accuracy']:.3f}, {c['class_thresholds']} class thresholds")
        for name, change in c.get("temperatures_by_modalities", {}).items():
            if change["before"] != change["after"]:
                print(f"  with {name}: temperature {change['before']:.3f} -> {change['after']:.3f}")
    if summary["calibration"]["rows_of_unknown_classes"]:
        print(f"skutag: note: {summary['calibration']['rows_of_unknown_classes']} calibration rows are of categories "
              "the model does not know (they count as wrong answers for the thresholds)", file=sys.stderr)
    return 0
