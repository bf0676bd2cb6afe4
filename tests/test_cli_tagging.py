"""`skutag train / tag / eval / retrain / demo / bundle` as a user runs them (in-process CLI)."""

from __future__ import annotations

import json

import pytest

from skutag.catalog_write import TAG_JSON_KEYS
from skutag.cli import main
from conftest import shared_path
from fusion_fixtures import GROCERY_CLASSES, grocery_rows, write_catalog

EVAL_KEYS = {"n", "accuracy", "macro_f1", "level_accuracy", "auto_rate", "auto_precision", "slices"}


def run(capsys, *argv):
    code = main([*argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    classes = GROCERY_CLASSES[1:]
    train = write_catalog(root / "train.jsonl", grocery_rows("train", classes, per_class=6))
    with train.open("a", encoding="utf-8") as handle:  # a malformed row is reported and skipped
        handle.write('{"id": "bad", "title": "x", "price": "cheap", "category": "Fruit > Banana > Banana"}\n')
    val = write_catalog(root / "val.jsonl", grocery_rows("val", classes, per_class=3))
    return root, train, val


@pytest.fixture(scope="module")
def model_dir(catalogs):
    root, train, _ = catalogs
    out = root / "model"
    assert main(["train", str(train), "--out", str(out), "--cv", "3", "--json"]) == 0
    return out


def test_train_reports_skipped_rows_and_writes_a_version(catalogs, model_dir, capsys):
    root, train, _ = catalogs
    code, out, err = run(capsys, "train", str(train), "--out", str(model_dir), "--cv", "3", "--modalities",
                         "vision,title", "--json")
    assert code == 0 and "line 19" in err and "price: not a number" in err
    summary = json.loads(out)
    assert summary["version"] == "v0002" and summary["rows"] == 18 and summary["metrics"]["modalities"] == ["vision", "title"]
    code, out, _ = run(capsys, "bundle", "list", str(model_dir), "--json")
    assert [(r["version"], r["current"]) for r in json.loads(out)] == [("v0001", False), ("v0002", True)]
    code, out, _ = run(capsys, "bundle", "rollback", str(model_dir), "--json")
    assert json.loads(out)["current"] == "v0001"


def test_tag_json_rows_have_exactly_the_documented_keys(catalogs, model_dir, capsys):
    _, _, val = catalogs
    code, out, _ = run(capsys, "tag", str(val), "--model", str(model_dir), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 9 and all(tuple(r) == TAG_JSON_KEYS for r in rows)
    assert all(r["decision"] in {"auto", "review", "manual"} and r["path"].count(" > ") == 2 for r in rows)
    banana = next(json.loads(line)["image"] for line in val.read_text().splitlines() if "Banana" in line)
    code, out, _ = run(capsys, "tag", banana, "--title", "Banana Ecological Class 1", "--model", str(model_dir))
    assert code == 0 and "Fruit > Banana > Banana" in out
    code, out, _ = run(capsys, "tag", "--title", "农夫山泉 饮用天然水 550ml", "--price", "2", "--json")
    row = json.loads(out)
    assert row["path"] == "食品饮料、保健食品 > 饮料冲调 > 饮用水" and row["decision"] in {"review", "auto"}


def test_eval_json_and_report(catalogs, model_dir, tmp_path, capsys):
    _, _, val = catalogs
    code, out, err = run(capsys, "eval", str(val), "--model", str(model_dir), "--json", "--report", str(tmp_path / "r"))
    metrics = json.loads(out)
    assert code == 0 and EVAL_KEYS <= set(metrics) and metrics["n"] == 9
    assert set(metrics["slices"]) == {"branded", "unbranded"} and EVAL_KEYS - {"slices"} <= set(metrics["slices"]["branded"])
    assert metrics["slices"]["branded"]["n"] == 3 and len(metrics["level_accuracy"]) == 3
    for name in ("confusion_matrix.png", "coverage_precision.png", "summary.md", "summary.html"):
        assert (tmp_path / "r" / name).stat().st_size > 500
    assert (tmp_path / "r" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert "| accuracy |" in (tmp_path / "r" / "summary.md").read_text(encoding="utf-8")


def test_retrain_with_corrections_file(catalogs, model_dir, tmp_path, capsys):
    _, _, val = catalogs
    code, out, _ = run(capsys, "retrain", "--model", str(model_dir), "--corrections", str(val), "--out",
                       str(tmp_path / "new"), "--json")
    summary = json.loads(out)
    assert code == 0 and summary["corrections"]["added"] == 9 and summary["rows"] == 27
    assert summary["parent"]["bundle"].endswith("v0001")


def test_demo_tags_the_bundled_examples(capsys):
    shared_path("grocery")  # the demo itself needs no shared data; this keeps the suite's data contract
    code, out, _ = run(capsys, "demo", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 11 and all(tuple(r) == TAG_JSON_KEYS for r in rows)
    code, out, _ = run(capsys, "demo")
    assert code == 0 and "[ex-01]" in out and "OCR gate" in out


def test_user_errors_are_clear(tmp_path, capsys):
    code, _, err = run(capsys, "eval", str(tmp_path / "none.jsonl"))
    assert code == 2 and "catalog file not found" in err
    code, _, err = run(capsys, "tag")
    assert code == 2 and "--title" in err
    code, _, err = run(capsys, "tag", "--title", "x", "--model", str(tmp_path))
    assert code == 2 and "not a model directory" in err
    (tmp_path / "one.jsonl").write_text('{"id": "a", "title": "t", "category": "x > y"}\n')
    code, _, err = run(capsys, "train", str(tmp_path / "one.jsonl"), "--out", str(tmp_path / "m"))
    assert code == 2 and "at least 2 categories" in err


def test_a_renamed_category_is_recorded_and_followed_by_retrain_and_tagging(catalogs, model_dir, tmp_path, capsys):
    from skutag.catalog import Product
    from skutag.config import SkutagConfig
    from skutag.pipeline import load_pipeline
    from skutag.taxonomy import CategoryTree

    _, _, val = catalogs
    rows = [json.loads(line) for line in val.read_text(encoding="utf-8").splitlines()]
    tree_file = tmp_path / "tree.json"
    CategoryTree.from_paths(sorted({r["category"] for r in rows})).save(tree_file)
    code, out, _ = run(capsys, "taxonomy", "--file", str(tree_file), "update", "Fruit > Banana", "--name", "Bananas")
    old_leaf, new_leaf = "Fruit > Banana > Banana", "Fruit > Bananas > Banana"
    renamed = {"Fruit > Banana": "Fruit > Bananas", old_leaf: new_leaf}
    assert code == 0 and f"renamed {old_leaf} -> {new_leaf}" in out
    aliases = tmp_path / "path_aliases.json"
    assert json.loads(aliases.read_text(encoding="utf-8")) == renamed

    # a bundle trained before the rename answers under the new name once given the aliases
    config = SkutagConfig.load(environ={})
    photos = [Product(id=r["id"], image=r["image"]) for r in rows if r["category"] == old_leaf]
    before = load_pipeline(config, model_dir, path_aliases={})
    after = load_pipeline(config, model_dir, path_aliases=json.loads(aliases.read_text(encoding="utf-8")))
    assert old_leaf in before.model.classes_
    answers = after.tag_batch(photos, audit=False)
    assert [a.path for a in answers] == [new_leaf if b.path == old_leaf else b.path
                                         for b in before.tag_batch(photos, audit=False)]
    assert any(a.path == new_leaf for a in answers) and new_leaf in after.decider.rules.known_paths

    # retraining relabels the old rows: the new bundle knows only the new name
    corrections = tmp_path / "corrections.jsonl"
    corrections.write_text(val.read_text(encoding="utf-8").replace(f'"{old_leaf}"', f'"{new_leaf}"'), encoding="utf-8")
    code, out, _ = run(capsys, "retrain", "--model", str(model_dir), "--corrections", str(corrections), "--out",
                       str(tmp_path / "renamed"), "--renamed", str(aliases), "--json")
    assert code == 0 and json.loads(out)["renamed"] == renamed
    classes = set(load_pipeline(config, tmp_path / "renamed", path_aliases={}).model.classes_)
    assert new_leaf in classes and old_leaf not in classes
    code, _, err = run(capsys, "retrain", "--model", str(model_dir), "--corrections", str(corrections), "--out",
                       str(tmp_path / "again"), "--renamed", str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json" in err


def test_eval_reports_skipped_rows_and_refuses_a_catalog_with_nothing_to_score(catalogs, model_dir, tmp_path, capsys):
    _, _, val = catalogs
    noisy = tmp_path / "noisy.jsonl"
    noisy.write_text(val.read_text(encoding="utf-8") + '{"id": "n1", "title": "x"}\n', encoding="utf-8")
    code, out, err = run(capsys, "eval", str(noisy), "--model", str(model_dir), "--json")
    assert code == 0 and json.loads(out)["n"] == 9 and json.loads(out)["skipped_rows"] == 1
    assert f"{noisy}: line 10:" in err and "(row skipped)" in err
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "category"}) + "\n"
                                  for line in val.read_text(encoding="utf-8").splitlines()), encoding="utf-8")
    code, out, err = run(capsys, "eval", str(unlabelled), "--model", str(model_dir), "--report", str(tmp_path / "r"))
    assert code == 2 and out == "" and "no labelled row to evaluate: all 9 rows were skipped (line 1:" in err
    assert not (tmp_path / "r").exists()


def test_bad_prices_and_unwritable_outputs_are_refused_before_any_work(catalogs, model_dir, tmp_path, capsys):
    _, train, val = catalogs
    for price in ("inf", "-5", "cheap", "nan"):  # NaN is refused as the API and a catalog refuse it
        with pytest.raises(SystemExit) as exit_info:
            main(["tag", "--title", "Banana", "--price", price])
        assert exit_info.value.code == 2 and "--price" in capsys.readouterr().err
    code, out, err = run(capsys, "tag", "--title", "Banana", "--price", "", "--json")
    assert code == 0 and json.loads(out)["path"]  # empty: no price
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    checks = [
        (["tag", str(val), "--model", str(model_dir), "--out", str(tmp_path)], "is a folder; give a file name"),
        (["tag", "--title", "x", "--out", str(a_file / "out.jsonl")], "is a file, so"),
        (["eval", str(val), "--model", str(model_dir), "--report", str(a_file)], "is a file; give a folder"),
        (["train", str(train), "--out", str(a_file)], "is a file; give a folder"),
        (["train", str(train), "--out", str(tmp_path / "m"), "--modalities", "vision,smell"], "--modalities: smell"),
    ]
    for argv, message in checks:
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "" and message in err, (argv, err)
    assert not (tmp_path / "m").exists()


def test_retrain_refuses_a_corrections_file_without_one_usable_row(model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1,\nnot json\n', encoding="utf-8")
    code, _, err = run(capsys, "retrain", "--model", str(model_dir), "--corrections", str(bad), "--out",
                       str(tmp_path / "new"))
    assert code == 2 and "no correction: all 2 rows were skipped" in err and not (tmp_path / "new").exists()


def test_retrain_names_the_categories_a_correction_adds(catalogs, model_dir, tmp_path, capsys):
    _, _, val = catalogs
    row = json.loads(val.read_text(encoding="utf-8").splitlines()[0])
    corrections = tmp_path / "new_category.jsonl"
    corrections.write_text(json.dumps({**row, "category": "Fruit > Melon > Piel de Sapo"}) + "\n", encoding="utf-8")
    code, out, err = run(capsys, "retrain", "--model", str(model_dir), "--corrections", str(corrections), "--out",
                         str(tmp_path / "new"), "--json")
    summary = json.loads(out)
    assert code == 0 and summary["new_categories"] == ["Fruit > Melon > Piel de Sapo"]
    assert "Fruit > Melon > Piel de Sapo is a new category" in err
    assert summary["parent"]["bundle"] == str((model_dir / "v0001").resolve())


def test_training_names_the_rows_whose_photo_could_not_be_read(catalogs, tmp_path, capsys):
    _, train, _ = catalogs
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    rows = train.read_text(encoding="utf-8").splitlines()[:12]
    rows.append(json.dumps({"id": "broken-photo", "image": str(broken), "title": "Banana Ecological",
                            "category": "Fruit > Banana > Banana"}))
    catalog = tmp_path / "train.jsonl"
    catalog.write_text("\n".join(rows) + "\n", encoding="utf-8")
    code, out, err = run(capsys, "train", str(catalog), "--out", str(tmp_path / "m"), "--cv", "2",
                         "--modalities", "vision,title", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["rows"] == 13
    assert len(summary["unreadable_inputs"]) == 1 and summary["unreadable_inputs"][0].startswith("broken-photo: image:")
    assert f"{catalog}: row broken-photo: image:" in err and "(trained without it)" in err
    manifest = json.loads(next((tmp_path / "m").glob("v*/manifest.json")).read_text(encoding="utf-8"))
    assert manifest["training_data"]["unreadable_inputs"] == 1


def test_a_bundle_from_another_scikit_learn_is_refused_and_fitted_again_as_the_message_says(model_dir, tmp_path, capsys):
    import re
    import shutil

    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    manifest_file = old / "v0001" / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    manifest["libraries"]["scikit-learn"] = "1.2.2"
    manifest_file.write_text(json.dumps(manifest), encoding="utf-8")
    (old / "CURRENT").write_text("v0001\n", encoding="utf-8")
    code, _, err = run(capsys, "tag", "--title", "Banana Ecological", "--model", str(old))
    assert code == 2 and "scikit-learn 1.2.2" in err
    advice = re.search(r"`skutag retrain --model (\S+) --out NEW_DIR`", err)
    assert advice, err
    code, out, _ = run(capsys, "retrain", "--model", advice.group(1), "--out", str(tmp_path / "new"), "--json")
    summary = json.loads(out)
    assert code == 0 and summary["corrections"]["rows"] == 0 and summary["rows"] == 18
    code, out, _ = run(capsys, "tag", "--title", "Banana Ecological", "--model", str(tmp_path / "new"), "--json")
    assert code == 0 and json.loads(out)["path"]


def test_auto_precision_is_null_not_zero_when_nothing_is_auto_tagged(catalogs, model_dir, monkeypatch, capsys):
    _, _, val = catalogs
    monkeypatch.setenv("SKUTAG_DECISION__ALWAYS_REVIEW", '["Fruit", "Vegetables", "Packages"]')
    code, out, _ = run(capsys, "eval", str(val), "--model", str(model_dir), "--json")
    metrics = json.loads(out)
    assert code == 0 and metrics["n"] == 9 and metrics["auto_rate"] == 0.0
    assert metrics["auto_precision"] is None and metrics["slices"]["branded"]["auto_precision"] is None
    assert metrics["accuracy"] > 0  # the answers are still scored
    code, out, _ = run(capsys, "eval", str(val), "--model", str(model_dir))
    assert code == 0 and "auto 0.0% at precision n/a (nothing auto-tagged)" in out


def test_edits_to_the_managed_tables_reach_tagging(tmp_path, monkeypatch, capsys):
    """`skutag taxonomy add`, `skutag brands add` and `skutag labelmap update` edit the user's copies under
    SKUTAG_HOME; the cold start of `skutag tag` reads those copies, not the bundled ones."""
    from skutag.fusion.coldstart import ColdStartScorer
    from skutag.taxonomy import LabelMap

    monkeypatch.setenv("SKUTAG_HOME", str(tmp_path / "home"))
    catalog = tmp_path / "c.jsonl"
    catalog.write_text('{"id": "kw", "title": "skutagium 茶饮 500ml"}\n{"id": "brand", "title": "熊猫侠 果汁饮料 1L"}\n',
                       encoding="utf-8")
    leaf = "食品饮料、保健食品 > 饮料冲调 > 实验茶"

    def paths():
        code, out, _ = run(capsys, "tag", str(catalog), "--json")
        assert code == 0
        return {row["id"]: row for row in map(json.loads, out.splitlines())}

    before = paths()
    assert before["kw"]["path"] != leaf and before["brand"]["path"] != leaf
    assert main(["taxonomy", "add", leaf, "--keywords", "skutagium"]) == 0
    assert main(["brands", "add", "熊猫侠", "--category", leaf]) == 0
    capsys.readouterr()
    after = paths()
    assert after["kw"]["path"] == leaf and after["kw"]["confidence"] > before["kw"]["confidence"]
    assert after["brand"]["path"] == leaf and after["brand"]["contributions"].get("brand", 0) > 0

    assert main(["labelmap", "update", "898", "--path", leaf]) == 0  # 898: water bottle
    assert " > ".join(LabelMap.active().get(898).path) == leaf
    scorer = ColdStartScorer()
    assert leaf in set(scorer.classes) and " > ".join(scorer.label_map.get(898).path) == leaf


def test_a_renamed_category_keeps_its_label_map_and_brand_votes_and_a_delete_warns(tmp_path, monkeypatch, capsys):
    """`skutag taxonomy update --name` on the managed tree moves the managed label map's and brands' paths
    along (as the service's rename does), so the cold start still answers the category under its new name;
    deleting it says which entries lost their category."""
    from skutag.queue.runner import tagger_namespace
    from skutag.queue.tagger_factory import TaggerSpec
    from skutag.taxonomy import LabelMap
    from skutag.taxonomy.brands import BrandLexicon

    monkeypatch.setenv("SKUTAG_HOME", str(tmp_path / "home"))
    catalog = tmp_path / "c.jsonl"
    catalog.write_text('{"id": "x", "title": "怡宝 纯净水 550ml"}\n', encoding="utf-8")
    old, new = "食品饮料、保健食品 > 饮料冲调 > 饮用水", "食品饮料、保健食品 > 饮料冲调 > 矿泉水"

    def answer():
        capsys.readouterr()
        code, out, _ = run(capsys, "tag", str(catalog), "--json")
        assert code == 0
        return json.loads(out)

    namespace = tagger_namespace(TaggerSpec())
    assert answer()["path"] == old
    assert main(["taxonomy", "update", old, "--name", "矿泉水"]) == 0
    out = capsys.readouterr().out
    assert "label map: 1 entries follow" in out and "brands: 4 follow" in out
    assert " > ".join(LabelMap.active().get(898).path) == new and new in BrandLexicon.active().get("怡宝").categories
    assert answer()["path"] == new
    assert tagger_namespace(TaggerSpec()) != namespace  # queued results of the old tables are not reused
    assert "warning" not in capsys.readouterr().err  # everything followed: nothing left without its category

    # renamed twice: the recorded renames compose (old answers of a bundle follow both steps)
    from skutag.pipeline import managed_path_aliases

    assert main(["taxonomy", "update", new, "--name", "天然水"]) == 0
    newest = "食品饮料、保健食品 > 饮料冲调 > 天然水"
    assert managed_path_aliases() == {old: newest, new: newest}
    assert main(["taxonomy", "update", newest, "--name", "矿泉水"]) == 0  # back again
    assert managed_path_aliases() == {old: new, newest: new} and answer()["path"] == new
    # a new category under a name that was renamed away: answers of that path mean the new category now
    assert main(["taxonomy", "add", newest]) == 0
    assert managed_path_aliases() == {old: new}
    capsys.readouterr()

    assert main(["taxonomy", "delete", new]) == 0
    captured = capsys.readouterr()
    assert "warning: 1 label-map entries and 4 brands name categories this tree lacks" in captured.err
    assert "path aliases: 1 renames dropped" in captured.out  # old answers are not read as a category now gone
    assert main(["brands", "add", "XBrand", "--category", "不存在 > 的类目"]) == 0
    assert "'不存在 > 的类目' is not in the category tree" in capsys.readouterr().err


def test_a_move_carries_a_repeated_label_and_a_damaged_side_file_is_reported_not_half_done(tmp_path, monkeypatch, capsys):
    from skutag.taxonomy import LabelMap
    from skutag.taxonomy.brands import BrandLexicon

    monkeypatch.setenv("SKUTAG_HOME", str(tmp_path / "home"))
    glasses = "服饰内衣 > 服饰配件 > 太阳镜"
    # 太阳镜 is already the label of an ImageNet class mapped there: a second entry repeats the label
    assert main(["labelmap", "add", "太阳镜", glasses, "--index", "1500"]) == 0
    assert main(["brands", "add", "雷朋", "--category", glasses]) == 0
    assert main(["taxonomy", "update", "服饰内衣 > 服饰配件", "--parent", "服饰内衣 > 男装"]) == 0
    moved = "服饰内衣 > 男装 > 服饰配件 > 太阳镜"
    assert " > ".join(LabelMap.active().get(1500).path) == moved
    assert BrandLexicon.active().get("雷朋").categories == (moved,)
    capsys.readouterr()
    assert main(["labelmap", "check"]) == 0 and "ok:" in capsys.readouterr().out

    # a draft named by --file in the managed folder is not the managed tree: the managed aliases stay
    aliases = tmp_path / "home" / "taxonomy" / "path_aliases.json"
    recorded = aliases.read_text(encoding="utf-8")
    assert main(["taxonomy", "--file", str(tmp_path / "home" / "taxonomy" / "draft.json"), "reset"]) == 0
    assert aliases.read_text(encoding="utf-8") == recorded

    (tmp_path / "home" / "taxonomy" / "brands.csv").write_text("x,y\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["taxonomy", "add", "服饰内衣 > 男装 > 领巾"]) == 0  # saved; the damaged lexicon is reported
    assert "the tree is saved, but warn dangling failed" in capsys.readouterr().err


def test_a_reset_after_a_rename_takes_the_label_map_and_brands_back(tmp_path, monkeypatch, capsys):
    from skutag.taxonomy import CategoryTree, LabelMap
    from skutag.taxonomy.brands import BrandLexicon

    monkeypatch.setenv("SKUTAG_HOME", str(tmp_path / "home"))
    assert main(["taxonomy", "update", "食品饮料、保健食品 > 饮料冲调", "--name", "饮品"]) == 0
    assert "食品饮料、保健食品 > 饮品 > 饮用水" in BrandLexicon.active().get("怡宝").categories
    capsys.readouterr()
    assert main(["taxonomy", "reset"]) == 0
    captured = capsys.readouterr()
    assert "label map: 7 entries follow" in captured.out and "warning" not in captured.err
    assert CategoryTree.active().version == CategoryTree.default().version
    assert LabelMap.active().version == LabelMap.default().version
    assert "食品饮料、保健食品 > 饮料冲调 > 饮用水" in BrandLexicon.active().get("怡宝").categories
