"""LabelMap: the bundled ImageNet map fits the backbone and the JD tree; CRUD, files, versions; the CLI."""

from __future__ import annotations

import json

import pytest

from conftest import shared_path
from skutag.taxonomy import CategoryTree, LabelMap, LabelMapError
from skutag.taxonomy.labelmap import DEFAULT_LABELMAP_FILE

WATER = ("食品饮料、保健食品", "饮料冲调", "饮用水")


def _imagenet_labels() -> list[str]:
    from skutag.taxonomy.labelmap import BACKBONE_LABELS_FILE

    if BACKBONE_LABELS_FILE.is_file():
        return BACKBONE_LABELS_FILE.read_text(encoding="utf-8").splitlines()
    return shared_path("imagenet_zh", "label_cn.txt").read_text(encoding="utf-8").splitlines()


def test_default_map_fits_the_backbone_and_the_default_tree():
    labels = _imagenet_labels()
    assert len(labels) == 1000
    bundled = LabelMap.load(DEFAULT_LABELMAP_FILE)
    assert len(bundled) >= 300
    assert all(e.index is not None and 0 <= e.index < len(labels) for e in bundled)
    assert bundled.problems(CategoryTree.default(), num_classes=len(labels)) == []
    english = shared_path("imagenet_zh", "label_en.txt").read_text(encoding="utf-8").splitlines()
    # the note is the English ImageNet name of the same index: the indices were not shifted
    assert all(e.note == english[e.index] for e in bundled)
    default = LabelMap.default(labels)
    assert default.lookup(index=898) == WATER  # water bottle -> 饮用水, the article's example
    assert default.lookup(labels[898]) == WATER
    for index in (440, 487, 504, 770, 849, 954):  # beer bottle, phone, mug, sneaker, teapot, banana
        assert default.lookup(index=index) is not None, english[index]


def test_index_lookups_survive_renamed_labels():
    mapping = LabelMap.default()
    renamed = mapping.with_labels([f"类{i}" for i in range(1000)])
    assert renamed.lookup(index=898) == WATER
    assert renamed.lookup("类898") == WATER
    assert renamed.lookup("不存在的标签") is None and renamed.lookup(index=0) is None


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".json", ".yaml"])
def test_round_trip_and_crud_versions(tmp_path, suffix):
    mapping = LabelMap.from_mapping({"水瓶": "饮料 > 饮用水", "Coffee Mug": ["厨具", "杯子"]})
    v0 = mapping.version
    mapping.add("啤酒瓶", "饮料 > 啤酒", index=440, note="beer bottle")
    v1 = mapping.version
    assert v1 != v0
    assert mapping.lookup("coffee   mug") == ("厨具", "杯子")  # case and spacing do not matter
    mapping.update(440, path="酒 > 啤酒")
    assert mapping.lookup(index=440) == ("酒", "啤酒") and mapping.version not in {v0, v1}
    loaded = LabelMap.load(mapping.save(tmp_path / f"map{suffix}"))
    assert loaded.version == mapping.version and loaded.get(440).note == "beer bottle"
    mapping.delete("啤酒瓶")
    assert mapping.version == v0


def test_bad_entries_are_named(tmp_path):
    mapping = LabelMap.from_mapping({"水瓶": "饮料 > 饮用水"})
    before = mapping.version
    with pytest.raises(LabelMapError, match="label '水瓶' already mapped"):
        mapping.add("水瓶", "饮料 > 果汁")
    with pytest.raises(LabelMapError, match="empty level"):
        mapping.add("杯子", "厨具 >  > 杯子")
    assert mapping.version == before
    path = tmp_path / "bad.tsv"
    path.write_text("index\tlabel\tpath\n1\t水瓶\t饮料 > 水\n1\t杯子\t厨具 > 杯\n", encoding="utf-8")
    with pytest.raises(LabelMapError, match="bad.tsv row 3: duplicate index 1 \\(first at bad.tsv row 2\\)"):
        LabelMap.load(path)
    path.write_text("index\tlabel\tpath\nx\t水瓶\t饮料 > 水\n", encoding="utf-8")
    with pytest.raises(LabelMapError, match="bad.tsv row 2: index 'x' is not an integer"):
        LabelMap.load(path)
    tree = CategoryTree.from_paths(["饮料 > 饮用水"])
    assert LabelMap.from_mapping({"a": "饮料"}).problems(tree) == ["label 'a': path '饮料' is not a leaf"]
    assert "not in the tree" in LabelMap.from_mapping({"a": "饮料 > 茶"}).problems(tree)[0]


def test_cli_manages_tree_and_label_map(tmp_path, monkeypatch, capsys):
    from skutag.cli import main

    monkeypatch.setenv("SKUTAG_HOME", str(tmp_path / "home"))
    assert main(["taxonomy", "version"]) == 0
    default_version = capsys.readouterr().out.strip()
    assert default_version == CategoryTree.default().version

    assert main(["taxonomy", "add", "食品饮料、保健食品 > 酒类 > 啤酒", "--keywords", "啤酒|beer"]) == 0
    assert main(["taxonomy", "version"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] != default_version
    assert main(["labelmap", "update", "440", "--path", "食品饮料、保健食品 > 酒类 > 啤酒"]) == 0
    assert main(["labelmap", "list", "--json", "--under", "食品饮料、保健食品 > 酒类"]) == 0
    listed = json.loads(capsys.readouterr().out.split("\n", 2)[-1])
    assert [e["index"] for e in listed] == [440]

    # a path the tree lacks is refused with a clear message, and nothing is saved
    assert main(["labelmap", "add", "酒瓶", "食品饮料、保健食品 > 酒类 > 白酒"]) == 2
    assert "label '酒瓶': path '食品饮料、保健食品 > 酒类 > 白酒' is not in the tree" in capsys.readouterr().err
    # deleting a category with children needs --cascade
    assert main(["taxonomy", "delete", "食品饮料、保健食品 > 酒类"]) == 2
    assert "descendants" in capsys.readouterr().err

    exported = tmp_path / "tree.yaml"
    assert main(["taxonomy", "export", str(exported)]) == 0
    assert CategoryTree.load(exported).find_path("食品饮料、保健食品 > 酒类 > 啤酒").keywords == ("啤酒", "beer")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,parent\n1,A,\n1,B,1\n", encoding="utf-8")
    assert main(["taxonomy", "import", str(bad)]) == 2
    assert "bad.csv row 3: duplicate id '1'" in capsys.readouterr().err
    assert main(["taxonomy", "reset"]) == 0
    assert main(["labelmap", "check"]) == 2  # 440 now points at the deleted 酒类 branch
    assert "(index 440)" in capsys.readouterr().out
    assert main(["labelmap", "reset"]) == 0 and main(["labelmap", "check"]) == 0
