"""``skutag vision``: human output like the article's, ``--json`` one object per image, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from skutag.cli import main
from skutag.config import SkutagConfig
from vision_support import retail_photo

pytestmark = pytest.mark.slow


@pytest.fixture
def photo_dir(tmp_path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(retail_photo(440), folder / "beer_bottle.jpg")
    shutil.copy(retail_photo(414), folder / "sub" / "backpack.JPEG")
    (folder / "notes.txt").write_text("not a photo")  # not an image suffix: skipped in folders
    return folder


def test_json_lines_one_object_per_image(photo_dir, capsys):
    broken = photo_dir / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    rc = main(["vision", str(photo_dir), "--json", "--top-k", "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert rc == 1  # one image failed
    assert [Path(r["image"]).name for r in records] == ["beer_bottle.jpg", "broken.jpg", "backpack.JPEG"]
    for record in records:
        assert set(record) == {"image", "top_k", "error"}
    good = [r for r in records if r["error"] is None]
    assert [r["top_k"][0]["index"] for r in good] == [440, 414]
    assert [r["top_k"][0]["label"] for r in good] == ["啤酒瓶", "背包"]
    assert all(len(r["top_k"]) == 3 and set(r["top_k"][0]) == {"label", "index", "prob"} for r in good)
    assert records[1]["top_k"] == [] and "not a recognised image" in records[1]["error"]


def test_human_output_reads_like_the_article(photo_dir, capsys):
    rc = main(["vision", str(photo_dir / "beer_bottle.jpg"), "--top-k", "2", "--int8"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0].endswith("beer_bottle.jpg")
    assert out[1].startswith("  • 啤酒瓶 (") and out[1].endswith("%)")
    assert len(out) == 3


def test_missing_path_and_missing_wwts_model_are_user_errors(tmp_path, capsys):
    assert main(["vision", str(tmp_path / "nope.jpg")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    shutil.copy(retail_photo(440), tmp_path / "a.jpg")
    assert main(["vision", str(tmp_path / "a.jpg"), "--backbone", "wwts", "--weights", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "pytorch_model.pt" in err and "meta_info.txt" in err
    assert main(["vision", str(tmp_path / "a.jpg"), "--backbone", "resnet9000"]) == 2
    assert "efficientnet-lite0" in capsys.readouterr().err


def test_vision_config_from_environment():
    config = SkutagConfig.load(environ={"SKUTAG_VISION__BACKBONE": "efficientnet-lite2", "SKUTAG_VISION__INT8": "yes"})
    assert config.vision.backbone == "efficientnet-lite2" and config.vision.int8 is True
    kwargs = config.vision.load_kwargs()
    assert kwargs["backbone"] == "efficientnet-lite2" and kwargs["int8"] is True and kwargs["threads"] is None
