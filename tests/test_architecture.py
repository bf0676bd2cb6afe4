"""The shape the code keeps: no import cycles, stage packages that never import the application, files a
newcomer can read (docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

from import_graph import ROOT, cycles, graph

STAGES = ("skutag.vision", "skutag.ocr", "skutag.text", "skutag.fusion", "skutag.taxonomy", "skutag.models")
# what a stage may import from outside the stages: leaf modules that import nothing of the project
STAGE_MAY_IMPORT = ("skutag.inference", "skutag.paths")
SIZE_LIMITED = ("vision", "fusion", "skutag/service", "skutag/store")
MAX_LINES = 500


def _in(module: str, packages) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_project_has_no_import_cycles():
    found = cycles(graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_stage_packages_never_import_the_application():
    wrong = {f"{module} imports {target}" for module, targets in graph().items() if _in(module, STAGES)
             for target in targets if not _in(target, STAGES) and target not in STAGE_MAY_IMPORT}
    assert not wrong, sorted(wrong)


def test_the_leaf_modules_stages_may_import_import_nothing_of_the_project():
    edges = graph()
    for leaf in STAGE_MAY_IMPORT:
        assert edges.get(leaf, set()) <= {"skutag"}, (leaf, edges.get(leaf))


def test_no_file_in_the_stage_and_service_packages_is_over_500_lines():
    long = {str(path.relative_to(ROOT)): n for folder in SIZE_LIMITED for path in (ROOT / folder).rglob("*.py")
            if "migrations" not in path.parts and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long


def test_the_import_graph_sees_a_cycle_when_there_is_one(tmp_path):
    """The checker itself: a two-module cycle is found (so a clean report means something)."""
    edges = {"skutag.a": {"skutag.b"}, "skutag.b": {"skutag.a"}, "skutag.c": {"skutag.a"}}
    assert cycles(edges) == [["skutag.a", "skutag.b"]]
    assert Path(__file__).with_name("import_graph.py").is_file()


def test_every_package_folder_is_in_the_wheel():
    """pyproject lists the packages one by one (the stage folders map under skutag.): a new package folder
    left out of the list would be missing from the wheel while every test in the repository passes."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    folders = {"skutag.examples"}
    for package in ("skutag", "vision", "ocr", "text", "fusion", "taxonomy", "models"):
        for init in (ROOT / package).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / package).parts
            folders.add(".".join(("skutag",) + (() if package == "skutag" else (package,)) + parts))
    assert folders == listed, {"missing": sorted(folders - listed), "extra": sorted(listed - folders)}


def test_reading_the_config_and_checking_input_do_not_import_scikit_learn():
    """Every command reads the config and `skutag batch` checks each row before its pool tags anything: neither may
    pay for importing scikit-learn and SciPy (seconds on a small machine), only the stages that fit or score do."""
    import subprocess
    import sys

    probe = ("import sys\n"
             "from skutag.config import SkutagConfig\n"
             "SkutagConfig.load(None, environ={})\n"
             "from skutag.policy.fields import check_price\n"
             "from skutag.catalog_io import iter_products\n"
             "assert check_price('¥12.50') == 12.5\n"
             "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
