"""OCR batch throughput with one worker and with several (``ocr.workers``), same photos, same process.

    .venv/bin/python -m bench.bench_ocr_workers [--n 40] [--workers 2] [--rotate auto]

Reads the first ``--n`` GroceryStore val ``Packages`` photos with the default OCR settings (in-memory
cache off), one worker, then ``--workers``, then one worker again (to see the machine's drift), and
checks that every variant read the same text. Prints photos per second and the speed-up against the
mean of the two single-worker runs.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT.parent / "shared" / "data" / "grocery" / "images" / "val" / "Packages"


def photos_per_second(workers: int, config, photos: list[str]) -> tuple[float, list[str]]:
    from skutag.ocr.engine import OcrEngine, backend_class

    make = backend_class(config.backend)
    chosen = replace(config, workers=workers)
    engine = OcrEngine(make(chosen), chosen, make_backend=lambda: make(chosen))
    engine.read(photos[:workers])  # models load and every worker's backend is built outside the timing
    started = time.perf_counter()
    results = engine.read(photos)
    return len(photos) / (time.perf_counter() - started), [r.text for r in results]


def main(argv: list[str] | None = None) -> int:
    from skutag.ocr.config import OcrConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rotate", default="auto")
    args = parser.parse_args(argv)
    photos = sorted(str(p) for p in PHOTOS.rglob("*.jpg"))[:args.n]
    if not photos:
        parser.error(f"no photos under {PHOTOS} (see ../shared/data/README.md)")
    config = OcrConfig(cache_size=0, rotate=args.rotate)
    rates, texts = {}, {}
    for name, workers in (("1", 1), (str(args.workers), args.workers), ("1-again", 1)):
        rates[name], texts[name] = photos_per_second(workers, config, photos)
        print(f"workers {name}: {rates[name]:.2f} photos/s", flush=True)
    base = (rates["1"] + rates["1-again"]) / 2
    report = {"photos": len(photos), "rotate": args.rotate, "photos_per_s": {k: round(v, 3) for k, v in rates.items()},
              "speedup": round(rates[str(args.workers)] / base, 2),
              "same_text": all(t == texts["1"] for t in texts.values())}
    print(json.dumps(report))
    return 0 if report["same_text"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
