"""``skutag bundle list|info|rollback``: the versions kept in a model directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from skutag.commands.tagging import _user_errors


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_bundle(subparsers)


def _register_bundle(subparsers) -> None:
    p = subparsers.add_parser("bundle", help="model versions: list, info, rollback",
                              description="Inspect the versions kept in a model directory and roll back.")
    sub = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    for name, help_text in (("list", "versions in MODEL_DIR (* = current)"), ("info", "manifest of the current version")):
        q = sub.add_parser(name, help=help_text)
        q.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
        q.add_argument("--json", action="store_true")
        q.set_defaults(func=run_bundle)
    q = sub.add_parser("rollback", help="make an earlier version current (default: the previous one)")
    q.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    q.add_argument("--to", metavar="VERSION")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_bundle)


def run_bundle(args: argparse.Namespace) -> int:
    from skutag.fusion import bundle as bundles

    with _user_errors():
        if args.bundle_command == "rollback":
            version = bundles.rollback(args.model_dir, args.to)
            payload = {"current": version.name, "path": str(version.path)}
            print(json.dumps(payload) if args.json else f"{args.model_dir}: current version is now {version.name}")
            return 0
        if args.bundle_command == "info":
            version = bundles.resolve(args.model_dir)
            manifest = version.manifest()
            print(json.dumps(manifest, ensure_ascii=False, indent=None if args.json else 2))
            return 0
        current = bundles.current(args.model_dir).name
        rows = []
        for v in bundles.versions(args.model_dir):
            m = v.manifest()
            rows.append({"version": v.name, "current": v.name == current, "created": m.get("created"),
                         "rows": m.get("training_data", {}).get("rows"),
                         "oof_accuracy": m.get("metrics", {}).get("oof_accuracy"),
                         "parent": m.get("training_data", {}).get("parent", {}).get("version")})
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{'*' if r['current'] else ' '} {r['version']}  {r['created']}  rows={r['rows']}  "
                  f"oof_accuracy={r['oof_accuracy']}" + (f"  parent={r['parent']}" if r['parent'] else ""))
    return 0
