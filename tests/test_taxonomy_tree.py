"""CategoryTree: the bundled JD tree, validation errors that name the bad row, CRUD, file round-trips, versions."""

from __future__ import annotations

import pytest

from skutag.taxonomy import CategoryTree, TaxonomyError

WATER = "食品饮料、保健食品 > 饮料冲调 > 饮用水"


@pytest.fixture(scope="module")
def jd() -> CategoryTree:
    return CategoryTree.default()


def test_default_tree_is_the_bundled_jd_tree(jd):
    assert len(jd.leaves()) == 1259
    assert jd.depth() == 3
    node = jd.find_path(WATER)
    assert node is not None and node.id == "973" and jd.is_leaf("973")
    assert jd.path_of("973") == ("食品饮料、保健食品", "饮料冲调", "饮用水")
    assert jd.path_string("973") == WATER
    assert jd.find_path("食品饮料、保健食品>饮料冲调>饮用水") == node  # spaces around '>' optional
    assert jd.find_path("食品饮料、保健食品 > 饮料冲调 > 不存在") is None
    assert [a.name for a in jd.ancestors("973")] == ["食品饮料、保健食品", "饮料冲调"]
    assert "饮用水" in jd.words() and "保健食品" in jd.words()  # '、' joined names also give their parts


def test_from_paths_builds_any_depth_and_repeats_are_fine():
    tree = CategoryTree.from_paths(["A > B > C > D", "A > B > E", "A > B > E", "F"])
    assert sorted(tree.path_of(n.id) for n in tree.leaves()) == [("A", "B", "C", "D"), ("A", "B", "E"), ("F",)]
    assert tree.depth() == 4
    # inner ids are derived from the path: the same paths give the same ids
    again = CategoryTree.from_paths(["F", "A > B > E", "A > B > C > D"])
    assert tree.find_path("A > B").id == again.find_path("A > B").id
    assert tree.version == again.version


@pytest.mark.parametrize(
    "table, message",
    [
        ("id\tname\tparent\n1\tA\t\n2\tB\t1\n2\tC\t1\n", "row 4: duplicate id '2' (first defined at t.tsv row 3)"),
        ("id\tname\tparent\n1\tA\t\n2\tB\t9\n", "row 3: parent '9' of '2' does not exist"),
        ("id\tname\tparent\n1\tA\t3\n2\tB\t1\n3\tC\t2\n", "cycle in parents"),
        ("id\tname\tparent\n1\tA\t\n2\tB\t1\n3\tB\t1\n", "row 4: path 'A > B' of '3' is already used by '2'"),
        ("id\tname\tparent\n1\tA\t\n2\t\t1\n", "row 3: missing name for id '2'"),
        ("id\tname\tparent\n1\tA > B\t\n", "row 2: name 'A > B' contains '>'"),
        ("level1\tlevel2\tlevel3\nA\t\tC\n", "row 2: empty level"),
        ("cat_id\tlevel1\tlevel2\n7\tA\tB\n8\tA\tB\n", "row 3: path 'A > B' has id '8' but t.tsv row 2 gave it '7'"),
        ("what\tever\nx\ty\n", "header must have"),
        ("id\tname\tparent\n1\tA\t\t\t\t\t\n", "row 2: 7 columns, header has 3"),
    ],
)
def test_validation_errors_name_the_bad_row(tmp_path, table, message):
    path = tmp_path / "t.tsv"
    path.write_text(table, encoding="utf-8")
    with pytest.raises(TaxonomyError) as info:
        CategoryTree.load(path)
    assert message in str(info.value)


def test_self_parent_and_cycle_in_json_name_the_node(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"nodes": [{"id": "a", "name": "A", "parent": "a"}]}', encoding="utf-8")
    with pytest.raises(TaxonomyError, match="t.json node 1: node .a. is its own parent"):
        CategoryTree.load(path)
    path.write_text('{"nodes": [{"id": "a", "name": "A", "parent": "b"}, {"id": "b", "name": "B", "parent": "a"}]}')
    with pytest.raises(TaxonomyError, match="cycle in parents: 'a' -> 'b' -> 'a'|cycle in parents: 'b' -> 'a' -> 'b'"):
        CategoryTree.load(path)
    path.write_text("not json", encoding="utf-8")
    with pytest.raises(TaxonomyError, match="t.json: not valid JSON"):
        CategoryTree.load(path)


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".json", ".yaml"])
def test_round_trip_keeps_everything(tmp_path, suffix):
    tree = CategoryTree.from_paths(["饮料 > 饮用水", "饮料 > 果汁", "零食, 坚果 > 瓜子"])
    tree.update("饮料 > 饮用水", keywords=["矿泉水", "纯净水"], synonyms=["水"])
    path = tree.save(tmp_path / f"tree{suffix}")
    loaded = CategoryTree.load(path)
    assert loaded.version == tree.version
    assert loaded.find_path("饮料 > 饮用水").keywords == ("矿泉水", "纯净水")
    assert loaded.find_path("饮料 > 饮用水").synonyms == ("水",)
    assert [n.to_json() for n in loaded.nodes()] == [n.to_json() for n in tree.nodes()]


def test_jd_tree_round_trips_through_every_format(tmp_path, jd):
    for suffix in (".tsv", ".csv", ".json", ".yml"):
        assert CategoryTree.load(jd.save(tmp_path / f"jd{suffix}")).version == jd.version


def test_crud_changes_version_and_failed_edits_change_nothing(jd):
    tree = jd.copy()
    start = tree.version
    beer = tree.add_path("食品饮料、保健食品 > 酒类 > 啤酒", node_id="beer")
    assert tree.path_of("beer") == ("食品饮料、保健食品", "酒类", "啤酒") and beer.id == "beer"
    after_add = tree.version
    assert after_add != start
    tree.update("beer", keywords=["精酿"])
    assert tree.version not in {start, after_add}
    tree.update("beer", name="精酿啤酒")
    assert tree.find_path("食品饮料、保健食品 > 酒类 > 精酿啤酒").id == "beer"
    tree.update("beer", parent="食品饮料、保健食品 > 饮料冲调")
    assert tree.path_of("beer") == ("食品饮料、保健食品", "饮料冲调", "精酿啤酒")

    before = tree.version
    with pytest.raises(TaxonomyError, match="already used"):
        tree.add("饮用水", parent="食品饮料、保健食品 > 饮料冲调")
    with pytest.raises(TaxonomyError, match="cycle"):
        tree.update("食品饮料、保健食品 > 饮料冲调", parent="beer")
    with pytest.raises(TaxonomyError, match="descendants"):
        tree.delete("食品饮料、保健食品 > 饮料冲调")
    with pytest.raises(KeyError, match="no category with id or path"):
        tree.delete("nope")
    assert tree.version == before

    tree.delete("beer")
    tree.delete("食品饮料、保健食品 > 酒类")
    assert tree.version == start  # back to the same content, back to the same version
    assert tree == jd


def test_delete_cascade_removes_the_subtree(jd):
    tree = jd.copy()
    removed = tree.delete("食品饮料、保健食品 > 饮料冲调", cascade=True)
    assert len(removed) == 1 + len(jd.children(jd.find_path("食品饮料、保健食品 > 饮料冲调").id))
    assert tree.find_path(WATER) is None and len(tree) == len(jd) - len(removed)


def test_path_aliases_compose_over_edits_and_refuse_a_malformed_file(tmp_path):
    from skutag.taxonomy.aliases import compose, follow, load_aliases, paths_by_id, renamed_between, save_aliases

    tree = CategoryTree.from_paths(["食品 > 饮料 > 饮用水", "食品 > 饮料 > 果汁", "日用 > 纸品"])
    before = paths_by_id(tree)
    tree.update(tree.resolve("食品 > 饮料").id, name="饮品")
    first = renamed_between(before, paths_by_id(tree))
    assert first == {"食品 > 饮料": "食品 > 饮品", "食品 > 饮料 > 饮用水": "食品 > 饮品 > 饮用水",
                     "食品 > 饮料 > 果汁": "食品 > 饮品 > 果汁"}
    second = {"食品 > 饮品": "食品 > 酒水饮料", "食品 > 饮品 > 饮用水": "食品 > 酒水饮料 > 饮用水",
              "食品 > 饮品 > 果汁": "食品 > 酒水饮料 > 果汁"}
    chained = compose(first, second)
    assert follow("食品 > 饮料 > 果汁", chained) == "食品 > 酒水饮料 > 果汁" == follow("食品 > 饮品 > 果汁", chained)
    assert follow("日用 > 纸品", chained) == "日用 > 纸品" and follow(None, chained) is None
    undo = {v: k for k, v in second.items()}
    back = compose(chained, undo)  # renamed back: 饮品 maps to nothing, answers under the middle name return
    assert back == {**first, **undo} and all(old != new for old, new in back.items())

    save_aliases(tmp_path / "a.json", chained)
    assert load_aliases(tmp_path / "a.json") == chained and load_aliases(tmp_path / "none.json") == {}
    (tmp_path / "bad.json").write_text('{"食品": 3}', encoding="utf-8")
    with pytest.raises(ValueError, match="old category path -> new path"):
        load_aliases(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not JSON"):
        load_aliases(tmp_path / "broken.json")


@pytest.mark.parametrize("content, needle", [
    ('{"paths": [1, 2]}', "a value of the wrong kind"),
    (b"\xff\xfe\x00", "not UTF-8 text"),
])
def test_a_damaged_managed_tree_is_a_clear_error_naming_the_file(tmp_path, content, needle):
    path = tmp_path / "tree.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(TaxonomyError, match=needle) as caught:
        CategoryTree.load(path)
    assert str(path) in str(caught.value)
