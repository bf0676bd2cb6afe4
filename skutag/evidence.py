"""Thin adapters from the stages to fusion evidence: vision and OCR outputs per product, cached by
image content hash, plus title brands. The stages are loaded lazily, once per collector.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from skutag.fusion.evidence import Evidence, OcrEvidence, VisionEvidence
from skutag.catalog import Product
from skutag.config import SkutagConfig
from skutag.feature_cache import FeatureCache
from skutag.ocr.engine import photo_needs as ocr_photo_needs
from skutag.ocr.quantize import int8_enabled
from skutag.vision.image import ImageLimits, file_problem
from skutag.vision.photo import Photo, PhotoNeeds

log = logging.getLogger(__name__)

VISION_LABELS_KEPT = 20
# OCR settings that change speed or memory but never the text read
_OCR_SETTINGS_NOT_AFFECTING_TEXT = {"threads", "cache_size", "model_dir"}  # labels cached per image (features use the top vision_top_k of them)
Progress = Callable[[int], None]
Record = tuple[Any, "bytes | None"]
"""What a feature cache keeps per key: (JSON-able metadata, blob or None)."""


def read_through(cache: FeatureCache | None, rows: Sequence[int], keys_of: Callable[[int], Iterable[str]],
                 compute: Callable[[list[int]], dict[str, Record]], *, known: dict[str, Record] | None = None,
                 chunk: int = 0, progress: Progress | None = None) -> tuple[dict[str, Record], list[int]]:
    """The records of ``rows`` (``keys_of(row)``: the cache keys a row needs), read from ``cache`` where it
    has them, computed where not: ``compute(rows)`` gives the missing rows' records by key, ``chunk`` rows
    at a time (0: all at once), each chunk stored as it comes (``progress`` told its size). Rows with the
    same keys are computed once; ``known`` records, computed already, are stored and used as they are.
    Returns (records by key, the rows computed)."""
    found: dict[str, Record] = {}
    if known:
        if cache is not None:
            cache.put_many(known)
        found.update(known)
    if cache is not None:
        found.update(cache.get_many(key for row in rows for key in keys_of(row) if key not in found))
    missing = sorted({tuple(keys_of(row)): row for row in rows
                      if any(key not in found for key in keys_of(row))}.values())
    step = chunk or max(1, len(missing))
    for start in range(0, len(missing), step):
        part = missing[start:start + step]
        fresh = compute(part)
        if cache is not None:
            cache.put_many(fresh)
        found.update(fresh)
        if progress is not None:
            progress(len(part))
    return found, missing


@dataclass
class _Image:
    """A product's photo, read once: its ``Photo`` (the bytes, their SHA-256 computed once, decoded at most once
    for every stage that reads it), or why its file cannot be read."""

    photo: Photo | None
    error: str | None = None
    name: str | None = None  # the file it came from, for messages

    @property
    def data(self) -> bytes | None:
        return None if self.photo is None else self.photo.data

    @property
    def digest(self) -> str:
        """The SHA-256 of the bytes ('' without a photo)."""
        return "" if self.photo is None else self.photo.sha256

    def named(self, message: str) -> str:
        """``message`` with the decoder's ``<N bytes>`` replaced by the file's name."""
        if self.name and self.data is not None:
            return message.replace(f"<{len(self.data)} bytes>", self.name)
        return message

    def release(self) -> None:
        """No stage will read the pixels again: drop the decoded views."""
        if self.photo is not None:
            self.photo.release()


def load_image_bytes(image: Any, needs: PhotoNeeds = PhotoNeeds(), limits: ImageLimits = ImageLimits()) -> _Image:
    """A product's photo (a path, bytes, or a ``Photo`` made already, e.g. by the service for its duplicate
    check) read once; ``needs``: the sizes the stages will read it at (the default, none: its bytes and hash
    only)."""
    if image is None:
        return _Image(None)
    if isinstance(image, Photo):
        return _Image(image)
    if isinstance(image, (bytes, bytearray)):
        return _Image(Photo(bytes(image), needs, limits))
    try:
        problem = file_problem(Path(image))
        data = None if problem else Path(image).read_bytes()
    except OSError as exc:
        problem = exc.strerror or str(exc)
    if problem:
        return _Image(None, f"image: cannot read {image}: {problem}")
    return _Image(Photo(data, needs, limits), name=str(image))


@dataclass
class EvidenceCollector:
    """Runs vision, OCR (when asked) and title-brand extraction for products; caches stage outputs."""

    config: SkutagConfig
    use_cache: bool = True
    tail: Any = None
    """A ``skutag.vision.tail.VisionTail`` (from a model bundle): its fine-tuned embeddings replace the
    backbone's."""
    _vision: Any = field(default=None, init=False, repr=False)
    _ocr: Any = field(default=None, init=False, repr=False)
    _lexicon: Any = field(default=None, init=False, repr=False)
    _brand_model: Any = field(default=None, init=False, repr=False)
    stats: dict[str, int] = field(default_factory=lambda: {"vision_run": 0, "vision_cached": 0, "ocr_run": 0,
                                                            "ocr_cached": 0, "tail_run": 0, "tail_cached": 0},
                                   init=False)

    # ------------------------------------------------------------------ stages (lazy)
    @property
    def vision_model(self):
        if self._vision is None:
            from skutag import vision
            from skutag.vision.runtime import resolve_runtime

            cfg = self.config.vision
            # beside a tail that serves the labels from its own graph, the plain network runs where that graph does
            runtime = resolve_runtime(cfg.runtime, int8=cfg.int8, one_graph_tail=self.tail is not None)
            self._vision = vision.load_model(
                backbone=cfg.backbone, runtime=runtime, int8=cfg.int8, threads=cfg.threads or None,
                cache_dir=cfg.cache_dir or None, calibration_dir=cfg.calibration_dir or None,
                max_pixels=cfg.max_pixels,
                **({"weights": cfg.wwts_dir} if cfg.backbone == "wwts" and cfg.wwts_dir else {}),
            )
        return self._vision

    @property
    def ocr_engine(self):
        if self._ocr is None:
            from skutag import ocr
            self._ocr = ocr.load_engine(config=self.config.ocr)
        return self._ocr

    @property
    def lexicon(self):
        if self._lexicon is None:
            from skutag.taxonomy.brands import BrandLexicon

            self._lexicon = BrandLexicon.active()
        return self._lexicon

    @lexicon.setter
    def lexicon(self, value) -> None:
        self._lexicon = value

    @property
    def brand_model(self) -> tuple[Any, str | None]:
        """(the learned brand-span model or None, its digest) per ``text.brand_model``."""
        if self._brand_model is None:
            from skutag.brand_model import load_brand_model

            self._brand_model = load_brand_model(self.config.text.brand_model)
        return self._brand_model

    def vision_key(self) -> str:
        model = self.vision_model
        key = f"{model.model_id}-{model.model_version}-{model.engine.answers}"
        # INT8 answers depend on the calibration too: the quantized file is named by it
        return f"{key}-{model.model_path.stem}" if model.int8 else key

    def ocr_key(self) -> str:
        """The OCR backend and a digest of every OCR setting (any change means other text may be read)."""
        import dataclasses
        import json

        cfg = self.config.ocr
        settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _OCR_SETTINGS_NOT_AFFECTING_TEXT}
        settings["int8"] = cfg.backend == "rapidocr" and int8_enabled(cfg)  # what "auto" means on this CPU
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"{cfg.backend}-{digest}"

    # ------------------------------------------------------------------ photos
    def photo_needs(self, ocr: bool = True) -> PhotoNeeds:
        """The sizes this collector's stages read a photo at: the vision input (the tail's is the same), and the
        OCR input when ``ocr`` (OCR may be read for it)."""
        needs = self.vision_model.photo_needs
        if self.tail is not None:
            needs = needs | self.tail.photo_needs
        return needs | ocr_photo_needs(self.config.ocr) if ocr else needs

    def photos(self, products: Sequence[Product], *, ocr: bool = True) -> list[_Image]:
        """Each product's photo read once (bytes, SHA-256) and decoded at most once, by the first stage that
        computes something for it, at the sizes vision and (``ocr``) OCR read it at: give them to ``collect``
        and ``add_ocr`` so that neither reads nor decodes the photo again."""
        if all(p.image is None for p in products):
            return [_Image(None) for _ in products]
        cfg = self.config
        limits = ImageLimits(max_pixels=min(cfg.vision.max_pixels, cfg.ocr.max_pixels) if ocr else cfg.vision.max_pixels)
        needs = self.photo_needs(ocr)
        return [load_image_bytes(p.image, needs, limits) for p in products]

    # ------------------------------------------------------------------ collection
    def collect(
        self,
        products: Sequence[Product],
        *,
        ocr: bool | Sequence[bool] = True,
        progress: Progress | None = None,
        photos: Sequence[_Image] | None = None,
    ) -> list[Evidence]:
        """Evidence for each product. ``ocr``: for all, none, or per product (gating). ``photos``: the products'
        photos from ``photos()`` (read here when not given)."""
        wants_ocr = [bool(ocr)] * len(products) if isinstance(ocr, bool) else [bool(x) for x in ocr]
        images = list(photos) if photos is not None else self.photos(products, ocr=any(wants_ocr))
        vision = self.vision(images, progress=progress)
        ocr_out = self.ocr([img if want else _Image(None) for img, want in zip(images, wants_ocr)])
        evidence = []
        for product, image, (v, v_err), (o, o_err) in zip(products, images, vision, ocr_out):
            # one unreadable photo: one message, naming its file
            errors = tuple(dict.fromkeys(image.named(e) for e in (image.error, v_err, o_err) if e))
            evidence.append(Evidence(
                id=product.id, vision=v, ocr=o, title=product.title, price=product.price,
                title_brands=self.title_brands(product.title), errors=errors,
            ))
        return evidence

    def add_ocr(self, products: Sequence[Product], evidence: Sequence[Evidence],
                photos: Sequence[_Image] | None = None) -> list[Evidence]:
        """The same evidence with OCR read for these products (used after gating). ``photos``: theirs from
        ``photos()``, as ``collect`` had them (read again here when not given)."""
        from dataclasses import replace

        images = list(photos) if photos is not None else self.photos(products, ocr=True)
        out = []
        for ev, (o, err) in zip(evidence, self.ocr(images)):
            out.append(replace(ev, ocr=o, errors=tuple(dict.fromkeys(ev.errors + ((err,) if err else ())))))
        return out

    def title_brands(self, title: str | None) -> tuple[str, ...]:
        if not title:
            return ()
        from skutag.text import extract_title_brands

        cfg = self.config.text
        found = extract_title_brands(title, self.lexicon, min_score=cfg.brand_min_score, patterns=cfg.brand_patterns,
                                     learned=self.brand_model[0])
        return tuple(dict.fromkeys(m.brand for m in found))

    def vision(self, images: Sequence[_Image], progress: Progress | None = None
               ) -> list[tuple[VisionEvidence | None, str | None]]:
        out: list[tuple[VisionEvidence | None, str | None]] = [(None, img.error) for img in images]
        todo = [i for i, img in enumerate(images) if img.photo is not None]
        if not todo:
            return out
        tuned: dict[str, np.ndarray | None] = {}

        def run(rows: list[int]) -> dict[str, Record]:
            results, embeddings = self._run_vision([images[i] for i in rows], progress)
            tuned.update(embeddings)
            return {images[i].digest: _vision_record(r) for i, r in zip(rows, results)}

        cache = FeatureCache("vision", self.vision_key()) if self.use_cache else None
        found, missing = read_through(cache, todo, lambda i: (images[i].digest,), run)
        self.stats["vision_cached"] += len(todo) - len(missing)
        self.stats["vision_run"] += len(missing)
        model_id = self.vision_model.model_id if missing else ""
        for i in todo:
            meta, blob = found[images[i].digest]
            out[i] = _vision_evidence(meta, blob, model_id)
        if self.tail is not None:
            self._apply_tail(images, out, tuned)
        return out

    def _run_vision(self, images: Sequence[_Image], progress: Progress | None
                    ) -> tuple[list, dict[str, np.ndarray | None]]:
        """Vision results of ``images``, and their tuned embeddings (by digest) where the bundle's tail
        computes both in one pass of the frozen part (``VisionTail.label_and_embed``)."""
        cfg, data = self.config.vision, [img.photo for img in images]
        if self.tail is not None and self._configured_tail().serves_labels_of(self.vision_model):
            results, embeddings = self.tail.label_and_embed(self.vision_model, data, top_k=VISION_LABELS_KEPT,
                                                            batch_size=cfg.batch_size, progress=progress)
            return results, {img.digest: e for img, e in zip(images, embeddings)}
        return self.vision_model.predict(data, top_k=VISION_LABELS_KEPT, batch_size=cfg.batch_size,
                                         progress=progress), {}

    # ------------------------------------------------------------------ fine-tuned tail
    def _configured_tail(self):
        """The bundle's tail, run with this configuration's threads and precision (``vision.int8``), on the plain
        network's runtime (so its graph can serve the labels too)."""
        from skutag.vision.runtime import resolve_runtime, tail_runtime

        cfg = self.config.vision
        self.tail.threads = cfg.threads or _cpu_threads()
        self.tail.int8, self.tail.calibration_dir = bool(cfg.int8), cfg.calibration_dir
        self.tail.runtime = tail_runtime(resolve_runtime(cfg.runtime, int8=cfg.int8, one_graph_tail=True))
        return self.tail

    def _apply_tail(self, images: Sequence[_Image], out: list, tuned: dict[str, np.ndarray | None]) -> None:
        """Put the tail's fine-tuned embedding in place of the backbone's (cached per tail and photo);
        ``tuned``: embeddings already computed beside the labels, by digest."""
        from dataclasses import replace

        rows = [i for i, (ev, _) in enumerate(out) if ev is not None]
        if not rows:
            return
        tail = self._configured_tail()
        key = f"{tail.digest[:24]}-{tail.answers}" + (f"+{tail.precision}" if tail.int8 else "")  # runtimes differ in the last digits
        cache = FeatureCache("vision-tail", key) if self.use_cache else None

        def run(rows: list[int]) -> dict[str, Record]:
            return {images[i].digest: _embedding_record(e)
                    for i, e in zip(rows, tail.embed([images[i].photo for i in rows]))}

        found, missing = read_through(cache, rows, lambda i: (images[i].digest,), run,
                                      known={d: _embedding_record(e) for d, e in tuned.items()})
        self.stats["tail_cached"] += sum(images[i].digest not in tuned for i in rows) - len(missing)
        self.stats["tail_run"] += len(missing) + len(tuned)
        for i in rows:
            ev, err = out[i]
            _, blob = found[images[i].digest]
            if blob is None:
                out[i] = (None, err or "image: the vision tail could not read the photo")
            else:
                out[i] = (replace(ev, embedding=np.frombuffer(blob, dtype=np.float32).copy()), err)

    def ocr(self, images: Sequence[_Image]) -> list[tuple[OcrEvidence | None, str | None]]:
        out: list[tuple[OcrEvidence | None, str | None]] = [(None, None)] * len(images)
        todo = [i for i, img in enumerate(images) if img.photo is not None]
        if not todo:
            return out
        def run(rows: list[int]) -> dict[str, Record]:
            return {images[i].digest: (r.to_json(), None)
                    for i, r in zip(rows, self.ocr_engine.read([images[i].photo for i in rows]))}

        cache = FeatureCache("ocr", self.ocr_key()) if self.use_cache else None
        found, missing = read_through(cache, todo, lambda i: (images[i].digest,), run)
        self.stats["ocr_cached"] += len(todo) - len(missing)
        self.stats["ocr_run"] += len(missing)
        for i in todo:
            meta, _ = found[images[i].digest]
            out[i] = self._ocr_evidence(meta)
        return out

    def _ocr_evidence(self, meta: dict) -> tuple[OcrEvidence | None, str | None]:
        from skutag.ocr.brands import extract_brands, line_prominences
        from skutag.ocr.result import OcrLine, OcrResult

        if meta.get("error"):
            return None, f"ocr: {meta['error']}"
        lines = tuple(
            OcrLine(text=line["text"], score=float(line["score"]), box=tuple(tuple(p) for p in line["box"]))
            for line in meta.get("lines", ())
        )
        result = OcrResult(image=meta.get("image", ""), lines=lines, width=int(meta.get("width") or 0),
                           height=int(meta.get("height") or 0))
        brands = extract_brands(result, self.lexicon)
        return OcrEvidence(
            lines=tuple((line.text, float(line.score)) for line in lines),
            brands=tuple((m.brand, float(m.score)) for m in brands),
            prominence=tuple(round(p, 4) for p in line_prominences(result)),
        ), None


def _cpu_threads() -> int:
    from skutag.inference import default_threads

    return default_threads()


def _embedding_record(embedding: np.ndarray | None) -> Record:
    return {"ok": embedding is not None}, None if embedding is None else np.asarray(embedding, np.float32).tobytes()


def _vision_record(result) -> tuple[dict, bytes | None]:
    if result.error:
        return {"error": result.error}, None
    meta = {"labels": [[s.label, int(s.index), float(s.prob)] for s in result.top_k],
            "model_id": result.model_id}
    embedding = None if result.embedding is None else np.asarray(result.embedding, np.float32).tobytes()
    return meta, embedding


def _vision_evidence(meta: dict, blob: bytes | None, model_id: str) -> tuple[VisionEvidence | None, str | None]:
    if meta.get("error"):
        return None, f"image: {meta['error']}"
    embedding = np.frombuffer(blob, dtype=np.float32).copy() if blob else None
    labels = tuple((str(label), int(index), float(prob)) for label, index, prob in meta["labels"])
    return VisionEvidence(labels=labels, embedding=embedding, model_id=meta.get("model_id") or model_id), None
