"""The shipped Chinese ImageNet-1k labels: 1,000 unique names, fixed where a shopper would misread them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from conftest import shared_path
from skutag.vision.labels import IMAGENET_ZH, imagenet_labels_zh, read_label_file

FIXES = IMAGENET_ZH.parent / "fixes.tsv"


def _fixes() -> list[tuple[int, str, str, str]]:
    rows = []
    for line in FIXES.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        index, english, source, shipped, _why = line.split("\t")
        rows.append((int(index), english, source, shipped))
    return rows


def test_thousand_unique_non_empty_labels():
    labels = imagenet_labels_zh()
    assert len(labels) == 1000
    assert all(label and label == label.strip() for label in labels)
    duplicates = [name for name, count in Counter(labels).items() if count > 1]
    assert duplicates == []


def test_shipped_file_is_source_plus_documented_fixes():
    source = read_label_file(shared_path("imagenet_zh", "label_cn.txt"))
    english = read_label_file(shared_path("imagenet_zh", "label_en.txt"))
    expected = list(source)
    for index, english_name, source_name, shipped in _fixes():
        assert english[index] == english_name, index
        assert source[index] == source_name, index
        expected[index] = shipped
    assert imagenet_labels_zh() == expected


def test_the_three_source_duplicates_now_read_apart():
    labels = imagenet_labels_zh()
    assert (labels[657], labels[744]) == ("导弹", "火箭弹")
    assert (labels[829], labels[705]) == ("有轨电车", "铁路客车车厢")
    assert (labels[837], labels[836]) == ("太阳镜", "墨镜")


def test_product_classes_read_right_to_a_shopper():
    labels = imagenet_labels_zh()
    assert labels[666] == "研钵"  # mortar and pestle, not building mortar (砂浆)
    assert labels[605] == "iPod音乐播放器"
    assert labels[643] == "面具"  # the class is a face-covering mask, not a surgical mask
    assert labels[681] == "轻薄笔记本电脑" and labels[620] == "笔记本电脑"  # not 平板电脑 (tablet)
    assert labels[590] == "掌上电脑"  # hand-held computer, not 手提电脑 (laptop)
    assert labels[653] == "奶桶"  # milk can, not 奶瓶 (baby bottle)
    assert labels[473] == "开罐器"
    assert labels[950] == "橙子"
    assert labels[898] == "水瓶" and labels[907] == "葡萄酒瓶" and labels[737] == "汽水瓶"


def test_license_ships_with_the_labels():
    assert (IMAGENET_ZH.parent / "LICENSE-Chinese-CLIP-MIT.txt").is_file()


def test_indexed_label_file_in_any_order(tmp_path: Path):
    meta = tmp_path / "meta_info.txt"
    meta.write_text("1\t狗\n0\t猫\n2\t矿泉水瓶\n", encoding="utf-8")
    assert read_label_file(meta) == ["猫", "狗", "矿泉水瓶"]
