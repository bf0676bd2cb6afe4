"""The ``service`` section of the skutag config: HTTP server, database, upload limits, duplicate
cache, review rules and retraining. Override with ``SKUTAG_SERVICE__<FIELD>`` or ``--config``."""

from __future__ import annotations

import math
from dataclasses import dataclass

from skutag.policy.fields import TITLE_MAX_CHARS

MAX_LOOK_POOL = 10000  # the informative order holds a pool x pool float32 matrix: 400 MB at this size
MAX_TYPICALITY = 4.0  # typicality ** 4 already all but ignores the uncertainty of outlying photos
REVIEW_TYPICALITY = 2.0  # the informative order's default power of typicality (docs/service.md: bench_review_order)


@dataclass(frozen=True)
class ServiceConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    db_url: str = ""  # empty: SQLite file $SKUTAG_HOME/skutag.db; or postgresql://user@host/db
    model_dir: str = ""  # empty: the database's active model version, else the cold-start pipeline
    max_upload_bytes: int = 10 * 1024 * 1024  # one photo
    max_request_bytes: int = 64 * 1024 * 1024  # a whole request (batch)
    max_image_pixels: int = 40_000_000
    max_decoded_pixels: int = 48_000_000  # pixels decoded at full size at once in one process (a budget)
    decode_wait_s: float = 30.0  # longest wait for that budget before a 503 with Retry-After
    max_batch: int = 64
    max_title_chars: int = TITLE_MAX_CHARS
    dedup: bool = True  # reuse stored predictions for exact / near-duplicate photos
    near_duplicate_bits: int = 6  # perceptual-hash Hamming distance still counted as the same photo (0 = exact only)
    tag_concurrency: int = 1  # model calls running at once in one process
    secret_key: str = ""  # session signing key; empty: generated once and kept in the database
    session_max_age_s: int = 8 * 3600
    cookie_secure: bool = False  # set True behind HTTPS
    # addresses of reverse proxies whose X-Forwarded-For is believed (empty: the peer is the client)
    trusted_proxies: tuple[str, ...] = ()
    holdout_fraction: float = 0.2  # share of human-verified products kept out of retraining to compare models
    min_holdout: int = 5
    holdout_catalog: str = ""  # a labelled catalog (JSONL/CSV) added to the held-out products of every comparison
    min_corrections_to_retrain: int = 5
    bundles_dir: str = ""  # where retrained candidates go; empty: $SKUTAG_HOME/bundles/service
    retrain_after_verdicts: int = 0  # retrain (not-worse check, then promote) after this many new verdicts; 0 = off
    # also retrain every this many hours when verdicts came in since the last retraining (same check); 0 = off
    retrain_every_hours: float = 0.0
    review_order: str = "informative"  # the review queue's default order: informative | arrival
    review_uncertainty: str = "margin"  # how the informative order reads a prediction's doubt: margin | entropy
    review_random_share: float = 0.1  # share of the informative order's places drawn at random (unbiased audits)
    review_class_decay: float = 0.5  # informative order: weight of each further product with the same predicted path
    review_look_pool: int = 2000  # informative order: the most valuable products ordered by their photos' looks (0: off)
    # informative order, products ordered by their looks: the power of how typical a photo is (0: not counted)
    review_typicality: float = REVIEW_TYPICALITY

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.port < 65536:
            problems.append(f"port must be 1-65535, got {self.port}")
        if self.max_upload_bytes <= 0 or self.max_request_bytes < self.max_upload_bytes:
            problems.append("max_upload_bytes must be > 0 and <= max_request_bytes")
        if not 0 <= self.near_duplicate_bits < 16:
            problems.append(f"near_duplicate_bits must be 0-15, got {self.near_duplicate_bits}")
        if not 0.0 < self.holdout_fraction < 1.0:
            problems.append(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.tag_concurrency < 1 or self.max_batch < 1:
            problems.append("tag_concurrency and max_batch must be >= 1")
        if self.retrain_after_verdicts < 0:
            problems.append(f"retrain_after_verdicts must be >= 0 (0 = off), got {self.retrain_after_verdicts}")
        if not (math.isfinite(self.retrain_every_hours) and self.retrain_every_hours >= 0):
            problems.append(f"retrain_every_hours must be a number of hours >= 0 (0 = off), got "
                            f"{self.retrain_every_hours}")
        if self.review_order not in ("informative", "arrival"):
            problems.append(f"review_order must be informative or arrival, got {self.review_order!r}")
        if self.review_uncertainty not in ("margin", "entropy"):
            problems.append(f"review_uncertainty must be margin or entropy, got {self.review_uncertainty!r}")
        if not 0 <= self.review_look_pool <= MAX_LOOK_POOL:
            problems.append(f"review_look_pool must be 0 (off) to {MAX_LOOK_POOL}, got {self.review_look_pool}")
        if not 0.0 < self.review_class_decay <= 1.0:
            problems.append(f"review_class_decay must be in (0, 1], got {self.review_class_decay}")
        if not (math.isfinite(self.review_typicality) and 0.0 <= self.review_typicality <= MAX_TYPICALITY):
            problems.append(f"review_typicality must be 0 to {MAX_TYPICALITY:g}, got {self.review_typicality}")
        if not 0.0 <= self.review_random_share <= 0.5:
            problems.append(f"review_random_share must be in [0, 0.5], got {self.review_random_share}")
        if problems:
            raise ValueError("service config: " + "; ".join(problems))
