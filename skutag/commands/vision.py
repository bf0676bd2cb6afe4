"""``skutag vision IMAGE_OR_DIR...``: top-k Chinese labels for product photos (the vision stage alone)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from skutag.cli import UserFacingError
from skutag.commands.flags import load_config

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
PROGRESS_MIN_IMAGES = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "vision",
        help="top-k Chinese labels for photos (vision stage only)",
        description="Classify product photos with the vision backbone: top-k Chinese labels with softmax "
        "probabilities. Folders are searched recursively for images. A photo that cannot be read is "
        "reported with its error and the rest still run (exit status 1 if any failed).",
    )
    parser.add_argument("paths", nargs="+", metavar="IMAGE_OR_DIR", type=Path, help="image files or folders")
    parser.add_argument("--top-k", type=int, default=None, help="labels per image (default: vision.top_k = 5)")
    parser.add_argument("--backbone", help="efficientnet-lite0 (default), efficientnet-lite2, wwts")
    parser.add_argument("--int8", action="store_true", default=None, help="static INT8 model (ONNX Runtime)")
    parser.add_argument("--runtime", choices=("auto", "onnx", "openvino", "torch"),  # skutag.vision.RUNTIMES
                        help="inference runtime (default: auto)")
    parser.add_argument("--weights", help="local weights file (efficientnet-*) or model folder (wwts)")
    parser.add_argument("--batch-size", type=int, help="images per forward pass (default: 16)")
    parser.add_argument("--threads", type=int, help="inference threads (default: one per core, at most 8)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image: image, top_k, error")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on long runs")
    parser.set_defaults(func=run_vision_command)


def collect_images(paths: list[Path]) -> list[Path]:
    """Files as given (a non-image file is reported per image); folders searched recursively for images."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.exists():
            found.append(path)
        else:
            raise UserFacingError(f"no such file or folder: {path}")
    if not found:
        raise UserFacingError(f"no images found in {', '.join(str(p) for p in paths)}")
    return found


VISION_FLAGS = {"vision.backbone": "backbone", "vision.int8": "int8", "vision.runtime": "runtime",
                "vision.weights": "weights", "vision.top_k": "top_k", "vision.batch_size": "batch_size",
                "vision.threads": "threads"}


def _vision_config(args: argparse.Namespace):
    return load_config(args, VISION_FLAGS).vision


def format_result(result) -> str:
    if result.error:
        return f"{result.image}\n  ✗ {result.error}"
    lines = [result.image] + [f"  • {score.label} ({score.prob * 100:.2f}%)" for score in result.top_k]
    return "\n".join(lines)


def run_vision_command(args: argparse.Namespace) -> int:
    from skutag import vision
    config = _vision_config(args)
    if config.top_k < 1 or config.batch_size < 1:
        raise UserFacingError("--top-k and --batch-size must be at least 1")
    images = collect_images(args.paths)
    try:
        model = vision.load_model(**config.load_kwargs())
    except (vision.ModelFilesMissingError, vision.UnknownBackboneError, vision.CheckpointFormatError) as exc:
        raise UserFacingError(str(exc)) from None
    except ValueError as exc:  # e.g. int8 with the torch runtime
        raise UserFacingError(str(exc)) from None

    try:
        failed = _classify(model, images, config, args)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")
        return 0
    if failed and not args.json:
        print(f"{failed} of {len(images)} images could not be read", file=sys.stderr)
    return 1 if failed else 0


def _classify(model, images: list[Path], config, args: argparse.Namespace) -> int:
    failed = 0
    with _progress(len(images), enabled=not args.no_progress) as advance:
        for start in range(0, len(images), config.batch_size):
            chunk = images[start : start + config.batch_size]
            for result in model.predict([str(p) for p in chunk], top_k=config.top_k, batch_size=config.batch_size):
                failed += result.error is not None
                if args.json:
                    print(json.dumps(result.to_json(), ensure_ascii=False), flush=True)
                else:
                    print(format_result(result), flush=True)
            advance(len(chunk))
    return failed


class _progress:
    """A rich progress bar on stderr for long runs in a terminal; a no-op otherwise."""

    def __init__(self, total: int, enabled: bool):
        self.total = total
        self.enabled = enabled and total >= PROGRESS_MIN_IMAGES and sys.stderr.isatty()
        self._progress = None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import Progress

        self._progress = Progress(console=Console(stderr=True), transient=True)
        self._progress.start()
        task = self._progress.add_task("vision", total=self.total)
        return lambda n: self._progress.advance(task, n)

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._progress.stop()
