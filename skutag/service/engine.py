"""The service's core, independent of HTTP: upload -> duplicate check -> tagging -> rules -> store;
corrections; model versions (promote, roll back; retraining from corrections is ``skutag.service.retraining``'s).

``TaggingService`` holds the served ``Tagger`` (loaded once; swapped atomically on promotion),
the ``Store`` and the in-memory perceptual-hash index of stored photos.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

from skutag.catalog import PATH_SEPARATOR, Product
from skutag.fusion.config import DecisionConfig
from skutag.fusion.result import Alternative, Decision, TagResult
from skutag.policy.fields import (
    InvalidInput,
    check_brand,
    check_id,
    check_photo_bytes,
    check_price,
    check_title,
    new_product_id,
    normalise_path,
)
from skutag.policy.rules import Rules, install_stored_lexicon, save_answer, stored_mapping, stored_whitelist
from skutag.service.config import ServiceConfig
from skutag.tagger import Tagger
from skutag.service.retrain import Retrainer, TaggerFactory
from skutag.service.retraining import RetrainJob, Retraining
from skutag.store.dedup import FINGERPRINT_NEEDS, PerceptualIndex, fingerprint, hamming
from skutag.store.repository import Store
from skutag.store.views import HUMAN_STATUSES, Conflict, ProductView
from skutag.vision.image import DECODE_BUDGET, ImageBusyError, ImageError, ImageLimits, ImageTooLargeError
from skutag.vision.photo import Photo, PhotoNeeds

log = logging.getLogger("skutag.service")

INDEX_SYNC_S = 2.0  # how often photos stored by other processes are looked for
FLIGHT_WAIT_S = 120.0  # longest wait for another request's answer to the same photo before tagging it anyway

__all__ = ["InvalidInput", "TaggingService", "TagOutcome", "Upload", "normalise_path", "tag_or_isolate"]


@dataclass(frozen=True)
class Upload:
    """One product as it arrives: photo bytes (or none), title, price, optional id and brand. Once its photo is
    stored, the upload handed to a tagger that takes decoded photos carries the ``Photo`` instead of the bytes."""

    image: bytes | Photo | None
    title: str | None = None
    price: Any = None  # a number or a shop's text ("¥12.90"); checked by validate()
    id: str | None = None
    brand: str | None = None


@dataclass(frozen=True)
class TagOutcome:
    product: ProductView | None
    error: InvalidInput | None = None

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": {"field": self.error.field, "message": self.error.message}}
        return self.product.to_json()


class TaggingService:
    def __init__(self, settings: ServiceConfig, store: Store, tagger_factory: TaggerFactory,
                 retrainer: Retrainer | None = None, decision: DecisionConfig | None = None):
        self.settings = settings
        self.decision = decision or DecisionConfig()  # the audit share and the configured review whitelist
        self.store = store
        self.tagger_factory = tagger_factory
        self.retrainer = retrainer
        self.index = PerceptualIndex(settings.near_duplicate_bits)
        self.limits = ImageLimits(max_pixels=settings.max_image_pixels, max_bytes=settings.max_upload_bytes,
                                  wait_s=settings.decode_wait_s)
        DECODE_BUDGET.resize(settings.max_decoded_pixels)  # per process: this service's photos decoded at once
        self._tagger: Tagger | None = None
        self._model_dir: str | None = None
        self._slots = threading.BoundedSemaphore(settings.tag_concurrency)
        self._swap_lock = threading.Lock()
        self._flights: dict[int, threading.Event] = {}  # stored photo id -> set when its model answer is saved
        self._flights_lock = threading.Lock()
        self.retraining = Retraining(self)
        self._index_synced_at = float("-inf")
        self._index_max_id = 0
        self._lexicon_version: int | None = None  # the stored lexicon the served tagger reads with

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load the served model once and fill the near-duplicate index from the database."""
        model_dir = self.settings.model_dir or None
        if model_dir is None:
            active = self.store.active_model()
            model_dir = active.model_dir if active else None
        tagger = self.tagger_factory(model_dir)
        self.store.register_model(tagger.model_version, model_dir, status="active")
        self.install(tagger, model_dir)
        self.sync_index(force=True)
        log.info("serving model %s (%s); %d photos indexed", tagger.model_version, model_dir or "cold start",
                 len(self.index))

    def sync_index(self, force: bool = False) -> int:
        """Add photos stored by other processes (more service instances, batch workers) to the
        near-duplicate index; at most every ``INDEX_SYNC_S`` seconds unless forced. Returns how many."""
        now = time.monotonic()
        if not force and now - self._index_synced_at < INDEX_SYNC_S:
            return 0
        self._index_synced_at = now
        added = 0
        for image_id, phash in self.store.iter_phashes(after_id=self._index_max_id):
            self.index.add(image_id, phash)
            self._index_max_id = max(self._index_max_id, image_id)
            added += 1
        return added

    @property
    def tagger(self) -> Tagger:
        if self._tagger is None:
            raise RuntimeError("the service has not been started (no model loaded)")
        return self._tagger

    @property
    def model_version(self) -> str:
        return self.tagger.model_version

    @property
    def model_dir(self) -> str | None:
        """The served model's folder (None: the cold-start pipeline)."""
        return self._model_dir

    def install(self, tagger: Tagger, model_dir: str | None) -> None:
        """Serve ``tagger`` (from ``model_dir``) from now on, reading brands with the stored lexicon; its
        sessions are built first, so no upload waits for them."""
        tagger.prepare()
        self.apply_lexicon(tagger)
        with self._swap_lock:
            self._tagger, self._model_dir = tagger, model_dir

    # ---------------------------------------------------------- brand lexicon
    def lexicon_entries(self, tagger: Tagger | None = None) -> dict[str, dict[str, list[str]]]:
        """The brand lexicon in force: the stored (edited) one, else the model's own."""
        stored = self.store.resource("lexicon")
        if stored is not None:
            return dict(stored.content)
        lexicon = (tagger or self.tagger).lexicon
        if lexicon is None:
            return {}
        return {b.name: {"aliases": list(b.aliases), "categories": list(b.categories)} for b in lexicon.entries}

    def apply_lexicon(self, tagger: Tagger | None = None) -> bool:
        """Hand the stored lexicon to the model's brand readers (OCR, title, cold start); False if it has none."""
        tagger = tagger or self._tagger
        version = install_stored_lexicon(self.store, tagger)
        if version is None:
            return False
        self._lexicon_version = version
        log.info("brand lexicon v%d applied to %s", version, tagger.model_version)
        return True

    def _follow_lexicon(self, rules: Rules) -> None:
        """Another service instance (same database) edited the lexicon: read brands with it too."""
        if rules.lexicon_version is not None and rules.lexicon_version != self._lexicon_version:
            self.apply_lexicon()

    # -------------------------------------------------------------- tagging
    def validate(self, upload: Upload) -> Upload:
        """The upload's fields under the product field rules (``skutag.policy.fields``), as ``skutag tag`` and
        ``skutag batch --db`` check a catalog row."""
        product_id = check_id(upload.id)
        title = check_title(upload.title, self.settings.max_title_chars)
        price = check_price(upload.price)
        brand = check_brand(upload.brand)
        image = check_photo_bytes(upload.image, self.settings.max_upload_bytes)
        if image is None and title is None:
            raise InvalidInput("image", "send a photo, a title, or both")
        return Upload(image=image, title=title, price=price, id=product_id or new_product_id(), brand=brand)

    def tag(self, upload: Upload) -> ProductView:
        outcome = self.tag_many([upload])[0]
        if outcome.error is not None:
            raise outcome.error
        return outcome.product

    def tag_many(self, uploads: Sequence[Upload]) -> list[TagOutcome]:
        """Tag a batch; a bad item gets its own error and the rest completes."""
        outcomes: list[TagOutcome | None] = [None] * len(uploads)
        pending: list[tuple[int, Upload, int | None, int | None, bool]] = []
        tagger = self.tagger
        version = tagger.model_version
        rules = self.rules()  # read once per batch, not once per product
        self._follow_lexicon(rules)
        # the sizes the tagger reads photos at (None: it reads their bytes itself); asked only when photos came
        needs = tagger.photo_needs if any(u.image is not None for u in uploads) else None
        for i, raw in enumerate(uploads):
            try:
                upload = self.validate(raw)
                photo = self._photo(upload.image, needs)
                image_id, phash, created = self._store_photo(photo)
            except InvalidInput as error:
                outcomes[i] = TagOutcome(None, error)
                continue
            reused = self._from_cache(upload, image_id, phash, created, version, rules)
            if reused is not None:
                outcomes[i] = TagOutcome(reused)
            elif photo is not None and needs is not None:  # the tagger reads the photo decoded for the fingerprint
                pending.append((i, dataclasses.replace(upload, image=photo), image_id, phash, created))
            else:
                pending.append((i, upload, image_id, phash, created))
        leaders, followers = self._split_duplicates(pending)
        mine, waiting = self._claim_flights(leaders)
        try:
            self._run_model(tagger, version, mine, outcomes, rules)
        finally:
            self._land_flights(mine)
        for entry, landed in waiting:  # the same photo is being tagged by another request: wait for its answer
            landed.wait(FLIGHT_WAIT_S)
            followers.append(entry)
        retry = []
        for entry in followers:  # same photo as a leader of this batch: reuse its fresh answer
            i, upload, image_id, phash, _ = entry
            reused = self._from_cache(upload, image_id, phash, False, version, rules)
            if reused is not None:
                outcomes[i] = TagOutcome(reused)
            else:
                retry.append(entry)
        self._run_model(tagger, version, retry, outcomes, rules)
        return outcomes  # type: ignore[return-value]

    def _claim_flights(self, entries):
        """Single flight across concurrent requests: an entry whose photo another request is tagging right now
        waits for that answer instead of running the model again. (entries to run, [(entry, event to wait on)])."""
        if not self.settings.dedup:
            return entries, []
        mine, waiting = [], []
        with self._flights_lock:
            for entry in entries:
                image_id = entry[2]
                if image_id is None:
                    mine.append(entry)
                elif image_id in self._flights:
                    waiting.append((entry, self._flights[image_id]))
                else:
                    self._flights[image_id] = threading.Event()
                    mine.append(entry)
        return mine, waiting

    def _land_flights(self, entries) -> None:
        with self._flights_lock:
            for entry in entries:
                event = self._flights.pop(entry[2], None) if entry[2] is not None else None
                if event is not None:
                    event.set()

    def _split_duplicates(self, pending):
        """Within one batch, only the first of several copies of a photo (same bytes, or a near copy)
        goes to the model; the others reuse its answer."""
        if not self.settings.dedup:
            return pending, []
        leaders, followers = [], []
        for entry in pending:
            _, _, image_id, phash, _ = entry
            duplicate = image_id is not None and any(
                image_id == lead[2] or (phash is not None and lead[3] is not None
                                        and hamming(phash, lead[3]) <= self.settings.near_duplicate_bits)
                for lead in leaders)
            (followers if duplicate else leaders).append(entry)
        return leaders, followers

    def _run_model(self, tagger: Tagger, version: str, entries, outcomes, rules: Rules) -> None:
        if not entries:
            return
        products = [Product(id=u.id, image=u.image, title=u.title, price=u.price, brand=u.brand)
                    for _, u, *_ in entries]
        started = time.perf_counter()
        with self._slots:
            results, outputs = tag_or_isolate(tagger, products)
        latency_ms = (time.perf_counter() - started) * 1000.0 / len(products)
        for (i, upload, image_id, phash, created), result, seen in zip(entries, results, outputs):
            seen = {**seen, "lexicon_version": self._lexicon_version}  # the brands it was read with
            outcomes[i] = TagOutcome(self._save(upload, image_id, result, version, rules, latency_ms=latency_ms,
                                                modalities=seen))
            if created and phash is not None:
                self.index.add(image_id, phash)

    def _photo(self, data: bytes | None, needs: PhotoNeeds | None) -> Photo | None:
        """The upload's photo, to be hashed and decoded once: for the duplicate check's fingerprint and, with the
        tagger's ``needs`` (``Tagger.photo_needs``), for its stages too."""
        if data is None:
            return None
        return Photo(data, FINGERPRINT_NEEDS | needs if needs is not None else FINGERPRINT_NEEDS, self.limits)

    def _store_photo(self, photo: Photo | None) -> tuple[int | None, int | None, bool]:
        if photo is None:
            return None, None, False
        try:
            fp = fingerprint(photo)
        except ImageBusyError as exc:  # the process is decoding all it may: the client tries again shortly
            raise InvalidInput("image", str(exc).replace(f"{photo.name}: ", ""), status=503) from None
        except ImageError as exc:
            status = 413 if isinstance(exc, ImageTooLargeError) or "limit" in str(exc) else 415
            raise InvalidInput("image", str(exc).replace(f"{photo.name}: ", ""), status=status) from None
        image_id, created = self.store.add_image(fp, photo.data)
        return image_id, fp.phash, created

    def _from_cache(self, upload: Upload, image_id: int | None, phash: int | None, created: bool,
                    version: str, rules: Rules) -> ProductView | None:
        if not self.settings.dedup or image_id is None:
            return None
        started = time.perf_counter()
        hit, kind, distance = None, None, 0

        def fits(earlier: ProductView) -> bool:
            """Same title, and a human's verdict or the model's answer under the brand lexicon in force now."""
            if not same_title(upload.title, earlier.title):
                return False
            return earlier.status in HUMAN_STATUSES or read_with_lexicon(earlier) == self._lexicon_version

        if not created:
            hit, kind = self.store.reusable_prediction(image_id, version, fits), "exact"
        if hit is None and phash is not None and self.settings.near_duplicate_bits > 0:
            self.sync_index()
            near = self.index.nearest(phash, exclude=image_id)
            if near is not None:
                hit, kind, distance = self.store.reusable_prediction(near[0], version, fits), "near", near[1]
        if hit is None:
            return None  # a new photo, or one shared by products of other titles (a placeholder shot): ask the model
        prediction, source = hit
        human = source.status in HUMAN_STATUSES
        path = source.path if human else prediction.path
        note = f"duplicate of product {source.id} ({kind}" + (f", {distance} bits" if kind == "near" else "") + ")"
        alternatives = tuple(Alternative(a["label"], a["path"], float(a["confidence"]))
                             for a in prediction.outputs.get("alternatives", []) if isinstance(a, dict))
        result = TagResult(
            id=upload.id, label=path.split(PATH_SEPARATOR)[-1] if path else None, path=path,
            confidence=1.0 if human else prediction.confidence,
            decision=Decision.AUTO if human else Decision(prediction.decision),
            alternatives=alternatives, contributions=prediction.contributions,
            reasons=((f"{note}: human-verified category",) if human else (note,) + tuple(
                r for r in prediction.reasons if not r.startswith("duplicate of"))),
            model_version=version,
        )
        latency_ms = (time.perf_counter() - started) * 1000.0
        return self._save(upload, image_id, result, version, rules, cache_hit=kind, duplicate_of=prediction.id,
                          latency_ms=latency_ms, modalities=prediction.outputs.get("modalities") or {})

    def _save(self, upload: Upload, image_id: int | None, result: TagResult, version: str, rules: Rules,
              **extra) -> ProductView:
        result = dataclasses.replace(result, model_version=version)
        return save_answer(self.store, upload.id, title=upload.title, price=upload.price, brand=upload.brand,
                           image_id=image_id, result=result, rules=rules, decision=self.decision, **extra)

    # ---------------------------------------------------------------- rules
    def rules(self) -> Rules:
        """The stored rules as they are now (one read of each resource)."""
        return Rules.read(self.store, self.decision.always_review)

    def apply_rules(self, result: TagResult, rules: Rules | None = None) -> TagResult:
        """Service-level rules on top of the model: renamed categories, label-map overrides and the review
        whitelist (``rules``: a snapshot from ``rules()``, read now when not given)."""
        return (rules or self.rules()).apply(result)

    # ------------------------------------------------------------ resources
    def categories(self) -> list[str]:
        stored = self.store.resource("taxonomy")
        paths = set(stored.content.get("paths", [])) if stored else set()
        return sorted(paths) if paths else self.tagger.categories()

    def label_map(self) -> dict[str, str]:
        return stored_mapping(self.store, "label_map")

    def path_aliases(self) -> dict[str, str]:
        """Old category path -> the path the taxonomy gives it now (``skutag.policy.renames``)."""
        return stored_mapping(self.store, "path_aliases")

    def whitelist(self) -> list[str]:
        return stored_whitelist(self.store, self.decision.always_review)

    def check_category(self, path: str) -> str:
        path = normalise_path(path)
        known = self.categories()
        if known and path not in known:
            raise InvalidInput("category", f"{path!r} is not in the taxonomy; add it first "
                                           f"(POST /v1/taxonomy/categories)")
        return path

    # ---------------------------------------------------------- corrections
    def correct(self, product_id: str, category: str | None, who: str, kind: str = "correct"):
        """A human verdict: ``correct`` / ``audit_fix`` with the right category; ``accept`` / ``audit_ok`` keep the
        suggested one."""
        if kind in ("correct", "audit_fix") and not (category or "").strip():
            raise InvalidInput("category", "a correction needs the right category path")
        path = self.check_category(category) if category else None
        correction = self.store.add_correction(product_id, path, who, kind)
        self.retraining.after_verdicts()
        return correction

    # ------------------------------------------------------- model versions
    def promote(self, version: str) -> None:
        model = self.store.model(version)
        if model.status == "rejected":
            raise Conflict(f"model {version} was rejected by the not-worse check; it cannot be promoted")
        tagger = self.tagger_factory(model.model_dir)
        self.store.promote(version)
        self.install(tagger, model.model_dir)

    def rollback(self) -> str:
        previous = self.store.active_model()
        target = self.store.rollback()
        try:
            tagger = self.tagger_factory(target.model_dir)
        except Exception:
            if previous is not None:
                self.store.promote(previous.version)
            raise
        self.install(tagger, target.model_dir)
        return target.version

    # ----------------------------------------------------------- retraining
    @property
    def retrain_job(self) -> RetrainJob:
        """The latest retraining's state (``skutag.service.retraining``)."""
        return self.retraining.job

    def start_retrain(self, who: str) -> RetrainJob:
        """Check there is enough to learn from, then retrain in a background thread (``Retraining.start``).
        Conflict when one is already running or there are too few verified products."""
        return self.retraining.start(who)

    def retrain_now(self, who: str = "system") -> RetrainJob:
        """Retrain in the calling thread and return the finished job (``Retraining.run_now``)."""
        return self.retraining.run_now(who)


def tag_or_isolate(tagger: Tagger, products: Sequence[Product]) -> tuple[list[TagResult], list[dict[str, Any]]]:
    """One model call for the batch; if the model raises, each product alone, so one product that breaks
    the model gets an error result (and a place in the review queue) while the others are tagged."""
    try:
        batch = tagger.tag(products, audit=False)  # the audit draw is the save path's (skutag.policy)
        if len(batch.results) != len(products):
            raise RuntimeError(f"the model returned {len(batch.results)} results for {len(products)} products")
        return batch.results, batch.outputs()
    except Exception:
        if len(products) == 1:
            log.exception("tagging %s failed", products[0].id)
            kind, message = sys.exc_info()[:2]
            return [TagResult.failed(products[0].id, f"tagging failed: {kind.__name__}: {message}")], [{}]
        log.warning("batch of %d failed in the model; tagging them one by one", len(products))
        pairs = [tag_or_isolate(tagger, [product]) for product in products]
        return [r[0] for r, _ in pairs], [o[0] for _, o in pairs]


def read_with_lexicon(product: ProductView) -> int | None:
    """The stored brand lexicon version a product's latest answer was read with (None: the model's own)."""
    outputs = product.prediction.outputs if product.prediction is not None else {}
    return (outputs.get("modalities") or {}).get("lexicon_version")


def same_title(new: str | None, cached: str | None) -> bool:
    """Whether a photo's earlier answer may be reused for an upload titled ``new``: no title, or the same one
    (case and spacing aside)."""
    if not new or not new.strip():
        return True
    return cached is not None and " ".join(new.split()).casefold() == " ".join(cached.split()).casefold()
