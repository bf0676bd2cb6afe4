"""The service's taxonomy and brand lexicon through the HTTP API and the command line, with a real (small)
photo model on GroceryStore photos: versioned edits, renames and moves that retag stored products, and the
database's tree and lexicon exported and imported by `skutag taxonomy` / `skutag brands`."""

from __future__ import annotations

import pytest
from service_fixtures import (  # noqa: F401  (fixtures)
    TEST_CLASSES,
    api,
    db_url,
    grocery_root,
    pg_url,
    photo_model_dir,
    photo_retrainer,
    photo_tagger_factory,
    upload,
    val_rows,
)


def test_taxonomy_label_map_and_brand_edits_are_versioned(api, val_rows):  # noqa: F811
    client, auth = api
    taxonomy = client.get("/v1/taxonomy", headers=auth).json()
    assert taxonomy["version"] == 0 and sorted(taxonomy["paths"]) == sorted(TEST_CLASSES)  # the model's categories
    added = client.post("/v1/taxonomy/categories", headers=auth, json={"path": "Fruit>Banana >Organic-Banana"})
    assert added.status_code == 201 and added.json()["version"] == 1
    paths = client.get("/v1/taxonomy", headers=auth).json()["paths"]
    assert "Fruit > Banana > Organic-Banana" in paths and len(paths) == len(TEST_CLASSES) + 1
    assert client.delete("/v1/taxonomy/categories", headers=auth,
                         params={"path": "Fruit > Banana > Organic-Banana"}).json()["version"] == 2
    inner = client.delete("/v1/taxonomy/categories", headers=auth, params={"path": "Fruit > Banana"})
    assert inner.status_code == 409 and "is not a leaf" in inner.json()["detail"]
    assert client.delete("/v1/taxonomy/categories", headers=auth, params={"path": "Toys > Lego"}).status_code == 404
    assert client.put("/v1/label-map/%20", headers=auth, json={"path": TEST_CLASSES[0]}).status_code == 422

    result = upload(client, auth, val_rows[0].image, id="lm-1").json()
    target = next(c for c in TEST_CLASSES if c != result["path"])
    mapped = client.put(f"/v1/label-map/{result['label']}", headers=auth, json={"path": target})
    assert mapped.status_code == 200
    again = upload(client, auth, val_rows[0].image, id="lm-2").json()  # exact duplicate, label map applied on top
    assert again["path"] == target and any("label map" in r for r in again["reasons"])
    assert client.delete(f"/v1/label-map/{result['label']}", headers=auth).status_code == 200

    brand = client.put("/v1/brands/Oatly", headers=auth,
                       json={"aliases": ["OATLY", " Oatly Barista ", "oatly barista", "噢麦力"],
                             "categories": ["Packages > Oat-Milk > Oatly-Oat-Milk"]})
    assert brand.status_code == 200
    # brands match case-blind: spellings that differ only in case (or are the name itself) are kept once
    assert client.get("/v1/brands", headers=auth).json()["brands"]["Oatly"]["aliases"] == ["Oatly Barista", "噢麦力"]
    one = client.put("/v1/brands/Oatly", headers=auth, json={"aliases": ["O"]})
    assert one.status_code == 422 and "2-200 characters" in one.json()["detail"]
    assert client.put("/v1/brands/Nope", headers=auth, json={"categories": ["Toys > Lego"]}).status_code == 422
    clash = client.put("/v1/brands/Oatmeal", headers=auth, json={"aliases": ["Oatly"]})  # another brand's name
    assert clash.status_code == 422 and clash.json()["field"] == "aliases" and "Oatly" in clash.json()["detail"]
    assert client.put("/v1/brands/Long", headers=auth, json={"aliases": ["x" * 201]}).status_code == 422
    assert "Oatmeal" not in client.get("/v1/brands", headers=auth).json()["brands"]
    versions = client.get("/v1/taxonomy/versions", headers=auth, params={"kind": "lexicon"}).json()["versions"]
    assert [v["version"] for v in versions] == [1] and versions[0]["created_by"] == "token:tests"
    assert upload(client, auth, val_rows[1].image, id="after-clash").status_code == 200  # the service still tags


def test_taxonomy_update_renames_moves_and_retags_with_clear_errors(api, val_rows):  # noqa: F811
    client, auth = api
    store = client.app.state.store

    def put(**body):
        return client.put("/v1/taxonomy/categories", headers=auth, json=body)

    def taxonomy():
        return client.get("/v1/taxonomy", headers=auth).json()

    assert client.put("/v1/label-map/Banana", headers=auth, json={"path": "Fruit > Banana > Banana"}).status_code == 200
    store.save_resource("whitelist", {"paths": ["Fruit > Banana", "Vegetables"]}, who="tests")
    product = upload(client, auth, val_rows[0].image, id="tax-1").json()

    # rename an inner category: its leaf follows, and so do the label map and the whitelist
    renamed = put(path="Fruit > Banana", name="Bananas", keywords=["banan", " banan ", "plátano"])
    assert renamed.status_code == 200, renamed.text
    body = renamed.json()
    assert body["version"] == 1 and body["created_by"] == "token:tests" and body["note"] == "update Fruit > Banana"
    assert body["category"]["path"] == "Fruit > Bananas" and body["category"]["keywords"] == ["banan", "plátano"]
    assert body["category"]["renamed"] == {"Fruit > Banana": "Fruit > Bananas",
                                           "Fruit > Banana > Banana": "Fruit > Bananas > Banana"}
    now = taxonomy()
    assert now["version"] == 1 and len(now["paths"]) == len(TEST_CLASSES)
    assert "Fruit > Bananas > Banana" in now["paths"] and "Fruit > Banana > Banana" not in now["paths"]
    assert now["tags"] == {"Fruit > Bananas": {"keywords": ["banan", "plátano"], "synonyms": []}}
    assert client.get("/v1/label-map", headers=auth).json() == {"version": 2,
                                                               "labels": {"Banana": "Fruit > Bananas > Banana"}}
    assert store.resource("whitelist").content["paths"] == ["Fruit > Bananas", "Vegetables"]
    # corrections take the new path, not the old one
    old = client.post("/v1/products/tax-1/corrections", headers=auth, json={"category": "Fruit > Banana > Banana"})
    assert old.status_code == 422 and "not in the taxonomy" in old.json()["detail"]
    new = client.post("/v1/products/tax-1/corrections", headers=auth, json={"category": "Fruit > Bananas > Banana"})
    assert new.status_code == 201 and product["path"] in TEST_CLASSES

    # move to the top level, then under another category; tags survive adds and removes
    assert put(path="Packages > Juice", root=True).json()["category"]["path"] == "Juice"
    assert "Juice > Tropicana-Apple-Juice" in taxonomy()["paths"]
    moved = put(path="Juice", parent="Fruit").json()
    assert moved["version"] == 3 and moved["category"]["path"] == "Fruit > Juice"
    assert "Fruit > Juice > Tropicana-Apple-Juice" in taxonomy()["paths"]
    assert client.post("/v1/taxonomy/categories", headers=auth, json={"path": "Fruit > Bananas > Plantain"}
                       ).status_code == 201
    assert client.delete("/v1/taxonomy/categories", headers=auth, params={"path": "Fruit > Bananas > Plantain"}
                         ).status_code == 200
    assert taxonomy()["tags"] == {"Fruit > Bananas": {"keywords": ["banan", "plátano"], "synonyms": []}}
    retagged = put(path="Fruit > Bananas", keywords=[], synonyms=["banana"])
    assert retagged.json()["category"]["renamed"] == {}
    assert taxonomy()["tags"] == {"Fruit > Bananas": {"keywords": [], "synonyms": ["banana"]}}
    version = taxonomy()["version"]

    cases = [
        (put(path="Toys > Lego", name="Duplo"), 404, "not in the taxonomy"),
        (put(path="Fruit", parent="Fruit > Lemon"), 409, "inside it"),
        (put(path="Fruit > Lemon", parent="Fruit > Lemon"), 409, "inside it"),
        (put(path="Fruit > Lemon", name="Lime"), 409, "'Fruit > Lime' already exists"),
        (put(path="Vegetables > Carrots", parent="Fruit", name="Lime"), 409, "already exists"),
        (put(path="Fruit > Lemon", name="Citrus > Lemon"), 422, "no '>'"),
        (put(path="Fruit > Lemon", name="  "), 422, "1-100 characters"),
        (put(path="Fruit > Lemon"), 422, "nothing to change"),
        (put(path="Fruit > Lemon", parent="Citrus"), 422, "'Citrus' is not in the taxonomy"),
        (put(path="Fruit > Lemon", parent="Fruit", root=True), 422, "not both"),
        (put(path="Fruit >  > Lemon", name="X"), 422, "not a category path"),
        (client.put("/v1/taxonomy/categories", json={"path": "Fruit", "name": "X"}), 401, ""),
    ]
    for response, status, message in cases:
        assert response.status_code == status and message in response.json()["detail"], response.text
    assert taxonomy()["version"] == version  # nothing was stored by the refused edits


def test_a_renamed_category_is_followed_by_stored_products_new_answers_and_the_next_retraining(
        api, val_rows, photo_model_dir):  # noqa: F811
    from service_fixtures import PhotoTagger

    client, auth = api
    store = client.app.state.store
    old_leaf, new_leaf = "Fruit > Banana > Banana", "Fruit > Banane > Banana"
    bananas = [row for row in val_rows if row.path == old_leaf]
    first, later = [r for r in val_rows if r not in bananas[len(bananas) // 2:]], bananas[len(bananas) // 2:]
    before = {f"rn{i:02d}": (row, upload(client, auth, row.image, id=f"rn{i:02d}").json()) for i, row in enumerate(first)}
    filed_as_banana = [pid for pid, (_, body) in before.items() if body["path"] == old_leaf]
    assert filed_as_banana, "the photo model files no val banana under bananas"

    def put(**body):
        response = client.put("/v1/taxonomy/categories", headers=auth, json=body)
        assert response.status_code == 200, response.text

    assert client.put("/v1/brands/Chiquita", headers=auth, json={"aliases": ["CHIQUITA"],
                      "categories": [old_leaf]}).status_code == 200
    put(path="Fruit > Banana", name="Bananas")
    put(path="Fruit > Bananas", name="Banane")  # a second edit: the alias map stays one lookup deep
    assert client.get("/v1/brands", headers=auth).json()["brands"]["Chiquita"]["categories"] == [new_leaf]
    assert store.resource("path_aliases").content == {
        "Fruit > Banana": "Fruit > Banane", old_leaf: new_leaf,
        "Fruit > Bananas": "Fruit > Banane", "Fruit > Bananas > Banana": new_leaf}
    for pid in filed_as_banana:  # stored products moved with the category
        assert client.get(f"/v1/products/{pid}", headers=auth).json()["path"] == new_leaf

    # the served model still knows only the old name; its answers come out under the new one
    answers = [upload(client, auth, row.image, id=f"rn-later{i}").json() for i, row in enumerate(later)]
    assert all(a["path"] != old_leaf for a in answers)
    fresh = [a for a in answers if a["path"] == new_leaf]
    assert fresh and all(f"taxonomy: {old_leaf} is now {new_leaf}" in a["reasons"] for a in fresh)
    assert all(alt["path"] != old_leaf for a in answers for alt in a["alternatives"])

    # the operators confirm every product under today's names; the retrained model knows only those
    for pid, (row, _) in before.items():
        truth = new_leaf if row.path == old_leaf else row.path
        assert client.post(f"/v1/products/{pid}/corrections", headers=auth, json={"category": truth}).status_code == 201
    job = client.post("/v1/models:retrain?wait=true", headers=auth).json()
    assert job["state"] in {"promoted", "rejected"}, job
    candidate = next(m for m in client.get("/v1/models", headers=auth).json()["models"]
                     if m["version"] == job["candidate_version"])
    classes = PhotoTagger.load(candidate["model_dir"]).categories()
    assert new_leaf in classes and old_leaf not in classes
    # the served model is compared under today's names too: it is not marked down for the rename
    from skutag.catalog import Product
    from skutag.service.retrain import accuracy

    served = PhotoTagger.load(photo_model_dir)
    filed = [Product(id=pid, image=before[pid][0].image.read_bytes(), category=new_leaf) for pid in filed_as_banana]
    assert accuracy(served, filed, renames=store.resource("path_aliases").content) == (1.0, 1.0)
    assert accuracy(served, filed)[0] == 0.0


def test_category_update_keeps_an_emptied_parent_and_refuses_too_deep_paths():
    from skutag.service.categories import CategoryChange, update_category
    from skutag.policy.fields import InvalidInput

    stored = {"paths": ["A > B > C", "A > D"], "tags": {"A > B": {"keywords": ["b"], "synonyms": []}}}
    moved = update_category(stored, (), "A > B > C", CategoryChange(parent="A > D"))
    assert moved.content == {"paths": ["A > B", "A > D > C"], "tags": stored["tags"]}  # B stays, as a leaf
    assert moved.renamed == {"A > B > C": "A > D > C"} and moved.follow("A > D") == "A > D"
    deep = {"paths": [" > ".join("L" + str(i) for i in range(8)), "X"]}
    with pytest.raises(InvalidInput, match="deeper than 8 levels"):
        update_category(deep, (), "L0", CategoryChange(parent="X"))
    seeded = update_category({"paths": []}, ["A > B"], "A", CategoryChange(name="Z"))  # before one is stored
    assert seeded.content == {"paths": ["Z > B"]}


def test_the_databases_taxonomy_goes_to_and_comes_from_the_command_line(api, db_url, val_rows, tmp_path, capsys):  # noqa: F811
    """`skutag taxonomy export/import --db`: the tree edited through the API becomes a file the command line
    manages, and a tree file becomes the service's taxonomy, unless stored products would lose their category."""
    from skutag.cli import main
    from skutag.taxonomy import CategoryTree

    client, auth = api
    assert main(["taxonomy", "export", str(tmp_path / "none.json"), "--db", db_url]) == 2
    assert "holds no edited taxonomy yet" in capsys.readouterr().err
    product = upload(client, auth, val_rows[0].image, id="tree-1").json()
    piped = client.put("/v1/taxonomy/categories", headers=auth, json={"path": "Fruit > Banana", "keywords": ["a|b"]})
    assert piped.status_code == 422 and "may not hold '|'" in piped.json()["detail"]
    assert client.put("/v1/taxonomy/categories", headers=auth,
                      json={"path": "Fruit > Banana", "name": "Bananas", "keywords": ["banan"]}).status_code == 200

    exported = tmp_path / "service-tree.json"
    assert main(["taxonomy", "export", str(exported), "--db", db_url]) == 0
    tree = CategoryTree.load(exported)
    assert tree.find_path("Fruit > Bananas > Banana") is not None and tree.find_path("Fruit > Banana") is None
    assert tree.find_path("Fruit > Bananas").keywords == ("banan",)
    managed = tmp_path / "managed.json"  # the command line's managed tree, here a file of its own
    assert main(["taxonomy", "--file", str(managed), "import", str(exported)]) == 0
    assert sorted(CategoryTree.load(managed).path_string(n) for n in CategoryTree.load(managed).leaves()) == sorted(
        client.get("/v1/taxonomy", headers=auth).json()["paths"])

    # back the other way: a file with one more category becomes the database's next version
    tree.add_path("Fruit > Bananas > Plantain")
    grown = tmp_path / "grown.json"
    tree.save(grown)
    capsys.readouterr()
    assert main(["taxonomy", "import", str(grown), "--db", db_url]) == 0
    assert "taxonomy version 2" in capsys.readouterr().out
    served = client.get("/v1/taxonomy", headers=auth).json()
    assert served["version"] == 2 and "Fruit > Bananas > Plantain" in served["paths"]
    assert served["tags"]["Fruit > Bananas"]["keywords"] == ["banan"]

    capsys.readouterr()
    assert main(["taxonomy", "import", str(grown), "--db", db_url]) == 0  # the same tree again: no new version
    assert "unchanged" in capsys.readouterr().out

    # what the database still uses must stay: the stored product's category, label-map targets; nothing is saved
    filed_under = client.get("/v1/products/tree-1", headers=auth).json()["path"]
    assert filed_under and filed_under.startswith(product["path"].split(" > ")[0])
    CategoryTree.from_paths([p for p in served["paths"] if p != filed_under]).save(tmp_path / "shrunk.json")
    assert main(["taxonomy", "import", str(tmp_path / "shrunk.json"), "--db", db_url]) == 2
    assert f"1 stored products are filed under {filed_under!r}, which is missing" in capsys.readouterr().err
    assert client.put("/v1/label-map/Plantain", headers=auth, json={"path": "Fruit > Bananas > Plantain"}).status_code == 200
    CategoryTree.from_paths([p for p in served["paths"] if p != "Fruit > Bananas > Plantain"]).save(tmp_path / "nop.json")
    assert main(["taxonomy", "import", str(tmp_path / "nop.json"), "--db", db_url]) == 2
    assert "the label map sends 'Plantain' to 'Fruit > Bananas > Plantain', which is missing" in capsys.readouterr().err
    # nor paths the service could not edit afterwards, nor an empty tree
    CategoryTree.from_paths([*served["paths"], " > ".join(f"L{i}" for i in range(10))]).save(tmp_path / "deep.json")
    assert main(["taxonomy", "import", str(tmp_path / "deep.json"), "--db", db_url]) == 2
    assert "at most 8 levels" in capsys.readouterr().err
    (tmp_path / "empty.csv").write_text("path\n", encoding="utf-8")
    assert main(["taxonomy", "import", str(tmp_path / "empty.csv"), "--db", db_url]) == 2
    assert "holds no categories" in capsys.readouterr().err
    assert client.get("/v1/taxonomy", headers=auth).json()["version"] == 2

    # a mistyped or empty URL is an error, never a new database nor the command line's own tree
    typo = tmp_path / "typo" / "skutag.db"
    assert main(["taxonomy", "import", str(grown), "--db", f"sqlite:///{typo}"]) == 2
    assert "no database at" in capsys.readouterr().err and not typo.parent.exists()
    assert main(["taxonomy", "export", str(tmp_path / "x.json"), "--db", ""]) == 2
    assert "--db needs a database URL" in capsys.readouterr().err
    assert main(["taxonomy", "export", str(tmp_path / "x.json"), "--db", "nosuchdb://x"]) == 2
    assert "unsupported database" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def test_the_databases_brand_lexicon_goes_to_and_comes_from_the_command_line(api, db_url, tmp_path, capsys):  # noqa: F811
    """`skutag brands export/import --db`: brands edited through the API become a CSV, and a CSV merges into
    the database's lexicon as its next version (before the first edit: into this machine's lexicon)."""
    from skutag.cli import main
    from skutag.taxonomy.brands import BrandLexicon

    client, auth = api
    assert main(["brands", "export", str(tmp_path / "none.csv"), "--db", db_url]) == 2
    assert "holds no edited lexicon yet" in capsys.readouterr().err
    incoming = tmp_path / "shop-brands.csv"
    incoming.write_text("brand,aliases,categories\nOatly,Oatly Barista|噢麦力,Packages > Oat-Milk > Oatly-Oat-Milk\n",
                        encoding="utf-8")
    assert main(["brands", "import", str(incoming), "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "into this machine's lexicon" in out and "lexicon version 1" in out
    served = client.get("/v1/brands", headers=auth).json()
    assert served["version"] == 1 and {"Oatly Barista", "噢麦力"} <= set(served["brands"]["Oatly"]["aliases"])
    assert "农夫山泉" in served["brands"]  # the lexicon it merged into is kept

    assert client.put("/v1/brands/Arla", headers=auth, json={"aliases": ["Arla Foods"], "categories": []}).status_code == 200
    exported = tmp_path / "db-brands.csv"
    assert main(["brands", "export", str(exported), "--db", db_url]) == 0
    lexicon = BrandLexicon.load(exported)
    assert lexicon.resolve("Arla Foods") == "Arla" and lexicon.resolve("噢麦力") == "Oatly"
    assert main(["brands", "import", str(exported), "--db", db_url]) == 0  # the same brands again: no new version
    assert "unchanged" in capsys.readouterr().out and client.get("/v1/brands", headers=auth).json()["version"] == 2

    bad = tmp_path / "bad.csv"
    bad.write_text("brand,aliases,categories\nValio,V,\n", encoding="utf-8")
    assert main(["brands", "import", str(bad), "--db", db_url]) == 2
    assert "alias 'V' needs 2-200 characters" in capsys.readouterr().err
    clash = tmp_path / "clash.csv"
    clash.write_text("brand,aliases,categories\nOat Co,Arla,\n", encoding="utf-8")  # another brand's name
    assert main(["brands", "import", str(clash), "--db", db_url]) == 2
    assert "Arla" in capsys.readouterr().err
    slash = tmp_path / "slash.csv"
    slash.write_text("brand,aliases,categories\nAC/DC,ACDC Brand,\n", encoding="utf-8")  # the API could not address it
    assert main(["brands", "import", str(slash), "--db", db_url]) == 2
    assert "no '/'" in capsys.readouterr().err
    # once the database has a taxonomy, a brand's categories must be in it, as for PUT /v1/brands
    assert client.post("/v1/taxonomy/categories", headers=auth, json={"path": "Fruit > Banana > Plantain"}).status_code == 201
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("brand,aliases,categories\nDole,Dole Co,Nowhere > Fake\n", encoding="utf-8")
    assert main(["brands", "import", str(elsewhere), "--db", db_url]) == 2
    assert "category: 'Nowhere > Fake' is not in the database's taxonomy" in capsys.readouterr().err
    assert client.get("/v1/brands", headers=auth).json()["version"] == 2

    elsewhere.write_text("brand,aliases,categories\nDole,Dole Co,Fruit > Banana > Plantain\n", encoding="utf-8")
    assert main(["brands", "import", str(elsewhere), "--db", db_url, "--replace"]) == 0
    assert "brands replaced by 1 added" in capsys.readouterr().out
    assert list(client.get("/v1/brands", headers=auth).json()["brands"]) == ["Dole"]
    assert main(["brands", "export", str(tmp_path), "--db", db_url]) == 2  # a folder
    assert "is a folder" in capsys.readouterr().err
    assert main(["brands", "export", "-", "--db", db_url]) == 0
    assert capsys.readouterr().out == "brand,aliases,categories\nDole,Dole Co,Fruit > Banana > Plantain\n"
