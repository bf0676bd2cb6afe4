"""Where the user's edited copies of the managed tables live: ``$SKUTAG_HOME/taxonomy/``.

``skutag taxonomy``, ``skutag labelmap`` and ``skutag brands`` write ``tree.json``, ``labelmap.tsv`` and
``brands.csv`` there; ``CategoryTree.active()``, ``LabelMap.active()`` and ``BrandLexicon.active()`` read them
(the bundled default until the first edit), and so does everything that tags. This module only says where:
it imports nothing of the package (the tables import it).
``SKUTAG_HOME`` defaults to ``$XDG_CACHE_HOME/skutag`` or ``~/.cache/skutag``.
"""

from __future__ import annotations

from pathlib import Path

from skutag.paths import skutag_home_dir

TREE_FILE_NAME = "tree.json"
LABELMAP_FILE_NAME = "labelmap.tsv"
LEXICON_FILE_NAME = "brands.csv"


def user_taxonomy_dir() -> Path:
    return skutag_home_dir() / "taxonomy"


def user_tree_path() -> Path:
    return user_taxonomy_dir() / TREE_FILE_NAME


def user_labelmap_path() -> Path:
    return user_taxonomy_dir() / LABELMAP_FILE_NAME


def user_lexicon_path() -> Path:
    return user_taxonomy_dir() / LEXICON_FILE_NAME
