"""``skutag ocr`` and ``skutag brands`` as a user runs them."""

from __future__ import annotations

import json


from skutag.cli import main
from skutag.taxonomy.brands import BrandLexicon
from conftest import shared_path
from ocr_support import render


def test_ocr_json_per_image_with_brands_and_errors(tmp_path, capsys):
    render(["农夫山泉", "NONGFU SPRING"]).save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    code = main(["ocr", "--json", str(tmp_path)])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1  # one image failed
    assert [r["image"].rsplit("/", 1)[-1] for r in records] == ["a.png", "b.jpg"]
    good, bad = records
    assert set(good) == {"image", "lines", "brands", "error"} and good["error"] is None
    assert good["brands"][0]["brand"] == "农夫山泉" and good["brands"][0]["evidence"]
    assert {"text", "score", "box"} <= set(good["lines"][0])
    assert bad["error"] and bad["lines"] == [] and bad["brands"] == []


def test_ocr_with_a_users_lexicon_file(tmp_path, capsys):
    lexicon = tmp_path / "mine.csv"
    lexicon.write_text("brand,aliases,categories\n小熊,Little Bear,\n", encoding="utf-8")
    render(["LITTLE BEAR", "农夫山泉"]).save(tmp_path / "x.png")
    assert main(["ocr", "--json", "--brands", str(lexicon), str(tmp_path / "x.png")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [b["brand"] for b in record["brands"]] == ["小熊"]


def test_ocr_human_output_on_a_real_photo(capsys):
    assert main(["ocr", str(shared_path("cn_bottles", "images", "可口可乐.jpg"))]) == 0
    out = capsys.readouterr().out
    assert "★ 可口可乐" in out


def test_ocr_clear_errors(tmp_path, capsys):
    assert main(["ocr", str(tmp_path / "nope.jpg")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nx\n", encoding="utf-8")
    render(["x"]).save(tmp_path / "x.png")
    assert main(["ocr", "--brands", str(bad), str(tmp_path / "x.png")]) == 2
    assert "header" in capsys.readouterr().err


def test_brands_crud_import_export(tmp_path, capsys):
    file = tmp_path / "brands.csv"
    BrandLexicon.default().save(file)
    base = ["brands", "--file", str(file)]
    assert main(base + ["add", "小熊", "--alias", "Little Bear", "--category", "食品饮料、保健食品 > 饮料冲调 > 饮料"]) == 0
    assert main(base + ["update", "小熊", "--add-alias", "xiaoxiong"]) == 0
    assert BrandLexicon.load(file).aliases_of("小熊") == ("Little Bear", "xiaoxiong")
    capsys.readouterr()
    assert main(base + ["list", "--json", "little bear"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["brands"][0]["brand"] == "小熊" and listed["version"] == BrandLexicon.load(file).version
    assert main(base + ["delete", "小熊"]) == 0
    assert "小熊" not in BrandLexicon.load(file)
    assert main(base + ["delete", "小熊"]) == 2

    incoming = tmp_path / "in.csv"
    incoming.write_text("brand,aliases,categories\n农夫山泉,NFSQ,\n新品牌,New Brand,\n", encoding="utf-8")
    assert main(base + ["import", str(incoming)]) == 0
    merged = BrandLexicon.load(file)
    assert "NFSQ" in merged.aliases_of("农夫山泉") and "新品牌" in merged and "怡宝" in merged
    assert main(base + ["import", "--replace", str(incoming)]) == 0
    assert BrandLexicon.load(file).brands == ["农夫山泉", "新品牌"]
    capsys.readouterr()
    assert main(base + ["export", "-"]) == 0
    assert capsys.readouterr().out.startswith("brand,aliases,categories\n农夫山泉,NFSQ")


def test_brands_edits_default_to_the_users_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SKUTAG_HOME", str(tmp_path))
    assert main(["brands", "add", "小熊"]) == 0
    assert (tmp_path / "taxonomy" / "brands.csv").is_file()
    active = BrandLexicon.active()
    assert "小熊" in active and "农夫山泉" in active  # the bundled lexicon plus the edit
    assert main(["brands", "match", "小熊牌 农夫山泉 550ml"]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == ["小熊\t小熊\t0:2", "农夫山泉\t农夫山泉\t4:8"]


def test_models_prepare(tmp_path, capsys):
    assert main(["models", "prepare", "--dest", str(tmp_path), "--size", "small"]) == 0
    assert (tmp_path / "PP-OCRv6_small_det" / "inference.onnx").is_file()
    assert "ready: 2 model folders" in capsys.readouterr().out
