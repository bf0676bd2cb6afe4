"""`skutag batch` refuses options that would be silently ignored: local-pool options with --broker, Celery-only
options without it."""

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


@pytest.mark.parametrize("options, needle", [
    (["--no-wait"], "--no-wait needs --broker"),
    (["--timeout", "30"], "--timeout needs --broker"),
    (["--force"], "--force needs --broker"),
])
def test_celery_only_options_are_refused_without_a_broker(tmp_path, capsys, options, needle):
    catalog = write_catalog([{"id": "a", "title": "Oatly havredryck"}], tmp_path / "c.jsonl")
    out = tmp_path / "out.jsonl"
    code = main(["batch", str(catalog), "--out", str(out), "--no-progress", *options])
    assert code == 2 and f"skutag: error: {needle}" in capsys.readouterr().err and not out.exists()


def test_an_interrupted_batch_says_where_its_results_are_and_how_to_go_on(tmp_path, capsys, monkeypatch):
    import skutag.queue.runner as runner

    def interrupted(request):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_batch", interrupted)
    catalog = write_catalog([{"id": "a", "title": "Oatly havredryck"}], tmp_path / "c.jsonl")
    code = main(["batch", str(catalog), "--out", str(tmp_path / "out.jsonl"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 130 and f"interrupted; what was tagged is in {tmp_path / 'out.jsonl'}" in err
    assert "rerun the same command to go on" in err
