"""A persistent cache of per-image stage outputs (vision, OCR) keyed by image content hash.

Training, evaluation and retraining on the same photos then run the expensive stages once. One SQLite
file per stage and model version under ``$SKUTAG_HOME/features/``; safe for several processes (WAL).
Values are a JSON text plus an optional binary blob (e.g. an embedding).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping

from skutag.paths import artifact_dir

_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


class FeatureCache:
    """``get_many(keys) -> {key: (meta, blob)}``; ``put_many({key: (meta, blob)})``."""

    def __init__(self, stage: str, model_key: str, root: str | Path | None = None):
        directory = Path(root) if root is not None else artifact_dir("features")
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{_SAFE.sub('_', stage)}-{_SAFE.sub('_', model_key)}.sqlite"
        self._local = threading.local()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, meta TEXT NOT NULL, blob BLOB)")

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def get_many(self, keys: Iterable[str]) -> dict[str, tuple[Any, bytes | None]]:
        wanted = sorted({k for k in keys if k})
        found: dict[str, tuple[Any, bytes | None]] = {}
        db = self._connect()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, meta, blob in db.execute(f"SELECT key, meta, blob FROM entries WHERE key IN ({marks})", chunk):
                found[key] = (json.loads(meta), blob)
        return found

    def put_many(self, items: Mapping[str, tuple[Any, bytes | None]]) -> None:
        if not items:
            return
        rows = [(key, json.dumps(meta, ensure_ascii=False), blob) for key, (meta, blob) in items.items() if key]
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO entries (key, meta, blob) VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM entries").fetchone()[0])
