"""Batch results into the product database (``skutag.store``), next to the JSONL output.

Each product is saved with its photo (stored once per SHA-256, with its perceptual hash, so the
service's duplicate cache and review dashboard see batch-tagged products like uploaded ones) and
the prediction that decided its status. Failed rows are saved with status ``error``.

Results are read under the database's service rules first (``skutag.policy.rules``: categories renamed
through the API, label-map overrides, the review whitelist), as the HTTP service answers: the JSONL output
and the stored product agree with what ``POST /v1/products`` would have said. The brand lexicon edited through
the service reaches the taggers too (``TaggerSpec.store_url`` for a local pool, ``follow_lexicon`` for workers).

What the database cannot hold is refused per product (:class:`StoreRefusedError`: an id the HTTP API would refuse,
a brand over the column's length, a NUL character), so one bad row fails alone; a database that cannot be reached
or is locked is :class:`StoreUnavailableError` (transient: a worker retries, a batch stops without marking the
product done). A failed row that names no readable product (a malformed catalog row) never overwrites a stored
product: it is stored only when the id is new.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from skutag.fusion.result import TagResult
from skutag.catalog import Product
from skutag.queue.core import TransientError
from skutag.redact import redacted_url
from skutag.policy.fields import InvalidInput, check_id, check_product
from skutag.policy.rules import Rules, install_stored_lexicon, save_answer

log = logging.getLogger(__name__)


class StoreRefusedError(ValueError):
    """The database cannot hold this product (a value too long, a character it refuses): the product fails alone."""


class StoreUnavailableError(TransientError):
    """The product database cannot be opened or written now (unreachable, locked, unwritable)."""


def storable_id_problem(product_id: str) -> str | None:
    """Why ``product_id`` cannot be a stored product's id (the API's rule, ``skutag.policy``), or None."""
    try:
        check_id(product_id)
    except InvalidInput as exc:
        return str(exc)
    return None


def storable_product_problem(product: Product) -> str | None:
    """Why the database cannot hold ``product`` (its id or a field the API would refuse), or None; the text is
    the API's 422 ``detail`` for the same field."""
    problem = storable_id_problem(product.id)
    if problem:
        return problem
    try:
        check_product(product)
    except InvalidInput as exc:
        return str(exc)
    return None


def open_store(url: str | None):
    """``Store.open(url)``; a database that cannot be opened is :class:`StoreUnavailableError` naming it."""
    from skutag.store import Store

    with _database_errors(f"cannot open the database {_redacted(url)}"):
        return Store.open(url)


@contextmanager
def _database_errors(doing: str) -> Iterator[None]:
    """A value the database refuses -> StoreRefusedError; a database that is away or locked -> StoreUnavailableError."""
    from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

    try:
        yield
    except (DataError, IntegrityError) as exc:
        raise StoreRefusedError(f"the database refused it: {_reason(exc)}") from exc
    except DBAPIError as exc:  # OperationalError (unreachable, locked, read-only), ProgrammingError, ...
        raise StoreUnavailableError(f"{doing}: {_reason(exc)}") from exc
    except StatementError as exc:  # a value that could not be sent at all
        raise StoreRefusedError(f"the database refused it: {_reason(exc)}") from exc
    except OSError as exc:  # a SQLite folder that cannot be made
        raise StoreUnavailableError(f"{doing}: {exc}") from exc


def _reason(exc: Exception) -> str:
    orig = getattr(exc, "orig", None) or exc
    return " ".join(str(orig).split())


def _redacted(url: str | None) -> str:
    """A database URL without its password, for messages."""
    return redacted_url(url) if url else "(default SQLite)"


class StoreSink:
    """Saves ``(product, result)`` pairs through ``skutag.store.Store``.

    ``whitelist``: review prefixes configured beside the stored ones (default: ``decision.always_review``
    of ``config_file``, as ``skutag serve --config`` reads it); the audit share is that config's
    ``decision.audit_rate``;
    ``rules_ttl``: seconds a snapshot of the stored rules is used before it is read again (long-running
    workers follow the dashboard's edits)."""

    def __init__(self, url: str | None, whitelist: tuple[str, ...] | None = None, rules_ttl: float = 30.0,
                 config_file: str | None = None):
        self.url = url
        self.store = open_store(url)
        self.saved = 0
        self.decision = _configured_decision(config_file)  # as `skutag serve --config` reads it
        self.whitelist = tuple(self.decision.always_review) if whitelist is None else tuple(whitelist)
        self.rules_ttl = float(rules_ttl)
        self._rules: tuple[float, Any] | None = None
        self._lexicon_version: int | None = None  # the stored lexicon last handed to a tagger

    def rules(self) -> Rules:
        """The database's service rules, read at most every ``rules_ttl`` seconds."""
        now = time.monotonic()
        if self._rules is None or now - self._rules[0] > self.rules_ttl:
            with _database_errors(f"cannot read the service rules from {_redacted(self.url)}"):
                self._rules = (now, Rules.read(self.store, self.whitelist))
        return self._rules[1]

    def apply_rules(self, result: TagResult) -> TagResult:
        """``result`` as the service would answer it (renames, label map, whitelist)."""
        return self.rules().apply(result)

    def follow_lexicon(self, tagger: Any) -> int | None:
        """Give ``tagger`` the brand lexicon edited through the service whenever its stored version changes
        (checked with the rules, every ``rules_ttl`` seconds); the version it reads with, None for its own."""
        version = self.rules().lexicon_version
        if version is not None and version != self._lexicon_version:
            self._lexicon_version = install_stored_lexicon(self.store, tagger)
        return self._lexicon_version

    def save(self, product: Product | None, result: TagResult) -> None:
        """Save ``product`` with ``result``; ``product`` None (a row that could not be read): only a new id is
        stored, as an error, and a stored product stays as it is. StoreRefusedError: the database cannot hold it."""
        with _database_errors(f"cannot save in the database {_redacted(self.url)}"):
            if product is None:
                self._save_failure(result)
            else:
                self._save_product(product, result)
        self.saved += 1

    def _save_failure(self, result: TagResult) -> None:
        problem = storable_id_problem(result.id)
        if problem:
            raise StoreRefusedError(problem)
        self.store.save_failure_if_new(result.id, result=result, model_version=result.model_version or "unknown")

    def _save_product(self, product: Product, result: TagResult) -> None:
        """``result`` is already under the rules (``apply_rules``: the output file says the same)."""
        problem = storable_product_problem(product)
        if problem:
            raise StoreRefusedError(problem)
        save_answer(self.store, result.id, title=product.title, price=product.price, brand=product.brand,
                    image_id=self._image_id(product.image), result=result, rules=_NO_RULES, decision=self.decision)

    def _image_id(self, image: str | Path | bytes | None) -> int | None:
        from skutag.store import fingerprint
        from skutag.vision.image import ImageError

        if image is None:
            return None
        try:
            data = image if isinstance(image, bytes) else Path(image).read_bytes()
            image_id, _ = self.store.add_image(fingerprint(data), data)
        except (OSError, ImageError) as exc:  # the row's error already says why; keep the product
            log.info("photo not stored: %s", exc)
            return None
        return image_id

    def close(self) -> None:
        self.store.close()


_NO_RULES = Rules(path_aliases={}, label_map={}, whitelist=[])


def _configured_decision(config_file: str | None):
    from skutag.config import SkutagConfig

    return SkutagConfig.load(config_file).decision

