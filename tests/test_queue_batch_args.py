"""`skutag batch --broker` refuses the local-pool options instead of silently ignoring them."""

from __future__ import annotations

import pytest

from queue_support import write_catalog
from skutag.cli import main


@pytest.mark.parametrize("options, flags, instead", [
    (["--workers", "4"], "--workers", "skutag worker --concurrency N"),
    (["--threads", "2"], "--threads", "skutag worker --threads N"),
    (["--chunk-size", "8"], "--chunk-size", "each Celery task tags one product"),
    (["--workers", "2", "--chunk-size", "8"], "--workers, --chunk-size", "skutag worker --concurrency N"),
])
def test_local_pool_options_are_refused_with_a_broker(tmp_path, capsys, options, flags, instead):
    catalog = write_catalog([{"id": "a", "title": "Oatly havredryck"}], tmp_path / "c.jsonl")
    out = tmp_path / "out.jsonl"
    code = main(["batch", str(catalog), "--out", str(out), "--broker", "redis://127.0.0.1:1/0", "--no-progress",
                 *options])
    err = capsys.readouterr().err
    assert code == 2
    assert f"skutag: error: {flags}: local-pool option(s), ignored with --broker" in err
    assert instead in err
    assert not out.exists()  # refused before anything was read, enqueued or written
