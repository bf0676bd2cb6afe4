"""Bundle format migrations: what a bundle written by older code lacks, filled in once, at load, here.

Format 1 (skutag 0.1): the stage packages were installed as top-level packages (``fusion.model`` ...),
so its pickles name classes under those modules; fitted objects pickled before a setting existed
lack its attribute, and the manifest lacks the settings that were not recorded yet.
Format 2: everything under ``skutag.``; every attribute and setting written.
Format 3: the manifest records ``training_confidences``, the histogram of the model's out-of-fold confidences
on its training rows (``skutag.fusion.drift``; the service's drift chart compares answers with it). Formats 1
and 2 get it at load, from the unpickled model (``upgrade_loaded_manifest``); None where the model kept none.
Vision tails written before serving kept its own ONNX graphs (format 1, and format 2 until then) hold the
fitted ``TailClassifier`` and ran it through torch; those written before the one serving graph keep two graphs
(``joint`` and ``tuned``, run one after the other): ``upgrade_vision_tail`` converts both, in any format.
Format 4: the same files, written as standard pickles (protocol 5, gzip level 1) and read by the C unpickler;
formats 1-3 wrote them with joblib, whose pure-Python pickler makes saving and loading a title model several
times slower (an incremental ``retrain`` loads and saves a whole version). Nothing in the objects changed.
Format 5: a fusion model keeps the OCR gate's thresholds fitted at training (``FusionModel.gate_``, from the
tagger's ``oof_without_``); models of formats 1-4 get ``gate_`` None (they read by their configured thresholds,
as they were trained to) and their taggers the settings that fit needs, off.

``load_file`` unpickles a version's file with the names of its format; ``upgrade_manifest``,
``upgrade_object`` and ``upgrade_loaded_manifest`` bring the manifest and the unpickled objects to the current
format. Nothing else in the code checks for missing attributes or manifest fields.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.abc
import importlib.util
import pickle
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .drift import ConfidenceHistogram

BUNDLE_FORMAT = 5
READABLE_FORMATS = (1, 2, 3, 4, 5)
OBJECTS_COMPLETE_FROM = 2  # pickles of this format on hold every attribute (formats 3 and 4 changed no object)
CONFIDENCES_FROM = 3  # manifests of this format on record ``training_confidences``
TRAINING_CONFIDENCES = "training_confidences"  # the manifest field format 3 added
PLAIN_PICKLES_FROM = 4  # files of this format on are gzip'd standard pickles (before: joblib's)
FITTED_GATE_FROM = 5  # fusion models of this format on hold their fitted OCR gate
PICKLE_PROTOCOL = 5
GZIP_LEVEL = 1  # level 1 writes several times faster than joblib's 3, for files about a fifth larger

# format 1's top-level stage packages, now under skutag.
LEGACY_PACKAGES = ("vision", "ocr", "text", "fusion", "taxonomy", "models")

# settings a format-1 manifest may lack, with the value such a bundle was trained with
FORMAT1_SETTINGS = {"fusion.ocr_text_weighting": "flat"}

_lock = threading.Lock()


class _LegacyNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``fusion.model`` to the module ``skutag.fusion.model`` while a format-1 pickle is read."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname.partition(".")[0] not in LEGACY_PACKAGES:
            return None
        real = importlib.util.find_spec(f"skutag.{fullname}")
        if real is None:
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=real.submodule_search_locations is not None)

    def create_module(self, spec):
        return importlib.import_module(f"skutag.{spec.name}")

    def exec_module(self, module) -> None:
        """The module is the already imported ``skutag.`` one; nothing to run."""


@contextmanager
def legacy_module_names() -> Iterator[None]:
    """Within the block, ``import fusion.model`` gives ``skutag.fusion.model`` (for format-1 pickles);
    afterwards the old names are gone again, so they never shadow a user's own modules."""
    with _lock:
        finder = _LegacyNames()
        before = set(sys.modules)
        sys.meta_path.insert(0, finder)
        try:
            yield
        finally:
            sys.meta_path.remove(finder)
            for name in set(sys.modules) - before:
                if name.partition(".")[0] in LEGACY_PACKAGES and not name.startswith("skutag."):
                    sys.modules.pop(name, None)


def dump_file(obj: Any, path: Path) -> None:
    """Write ``obj`` as the current format's files are written."""
    with gzip.open(path, "wb", compresslevel=GZIP_LEVEL) as handle:
        pickle.dump(obj, handle, protocol=PICKLE_PROTOCOL)


def load_file(path: Path, file_format: int) -> Any:
    """Unpickle ``path`` of a bundle written in ``file_format``."""
    if file_format >= PLAIN_PICKLES_FROM:
        with gzip.open(path, "rb") as handle:
            return pickle.load(handle)
    import joblib

    if file_format >= 2:
        return joblib.load(path)
    with legacy_module_names():
        return joblib.load(path)


def upgrade_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as the current format writes it, as far as the manifest alone tells: a bundle older than
    format 3 has ``training_confidences`` None here (``upgrade_loaded_manifest`` fills it from its model)."""
    file_format = manifest.get("format")
    if file_format not in READABLE_FORMATS or file_format == BUNDLE_FORMAT:  # unknown ones are refused, not guessed
        return manifest
    upgraded = dict(manifest)
    if file_format == 1:
        config = {section: dict(values) for section, values in (upgraded.get("config") or {}).items()}
        if config.get("fusion"):  # a setting the bundle predates: what it was trained with
            for key, value in FORMAT1_SETTINGS.items():
                section, _, name = key.partition(".")
                config.setdefault(section, {}).setdefault(name, value)
        upgraded["config"] = config
    if file_format < CONFIDENCES_FROM:
        upgraded[TRAINING_CONFIDENCES] = None
    upgraded["format"] = BUNDLE_FORMAT
    upgraded["migrated_from_format"] = file_format
    return upgraded


def upgrade_loaded_manifest(manifest: dict[str, Any], model: Any, file_format: int) -> dict[str, Any]:
    """``manifest`` (already through ``upgrade_manifest``) with what only the unpickled ``model`` can tell:
    for a bundle older than format 3, ``training_confidences`` from the fitted fusion model's out-of-fold
    confidences (None when the model kept none)."""
    if file_format >= CONFIDENCES_FROM:
        return manifest
    tagger = getattr(model, "__dict__", {}).get("tagger_")  # a FusionModel's FusionTagger
    confidences = getattr(tagger, "__dict__", {}).get("oof_confidences_")
    record = ConfidenceHistogram.of(confidences).to_json() if confidences is not None and len(confidences) else None
    return {**manifest, TRAINING_CONFIDENCES: record}


# attribute -> value a format-1 object of that class lacks it with; keyed by class name
_FORMAT1_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "FusionModel": {"title_featurizer": None, "calibration_": None},
    "FusionTagger": {"pattern_temperatures_": {}},
    "EvidenceFeaturizer": {"ocr_text_weighting": "flat"},
    "_OcrPart": {"weighting": "flat"},
}
# attribute -> value an object of a format before FITTED_GATE_FROM lacks it with
_FORMAT4_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "FusionModel": {"gate_": None},
    "FusionTagger": {"oof_without": None, "oof_top_k": 3, "oof_without_": None},
}


def upgrade_object(obj: Any, file_format: int) -> Any:
    """``obj`` (a model, tail, training or calibration record) with what the current format writes filled in; walks
    the attributes and containers reachable from it once. A vision tail pickled before serving kept its
    own graphs is converted whatever the format (``upgrade_vision_tail``)."""
    if file_format >= FITTED_GATE_FROM:
        return upgrade_vision_tail(obj)
    if file_format >= OBJECTS_COMPLETE_FROM:  # only a fusion model and its tagger lack anything: no walk
        state = getattr(obj, "__dict__", None) or {}
        for item in (obj, state.get("tagger_")):
            _fill_missing(item, (_FORMAT4_ATTRIBUTES,))
        return upgrade_vision_tail(obj)
    seen: set[int] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen or item is None or isinstance(item, (str, bytes, int, float, bool)):
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            stack.extend(item.values())
            continue
        if isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
            continue
        state = getattr(item, "__dict__", None)
        if state is None or type(item).__module__.split(".")[0] not in ("skutag", "sklearn"):
            continue
        if type(item).__name__ == "VisionTail":
            upgrade_vision_tail(item)  # converted whole: nothing in it to walk
            continue
        _fill_missing(item, (_FORMAT1_ATTRIBUTES, _FORMAT4_ATTRIBUTES))
        stack.extend(state.values())
    return obj


def _fill_missing(item: Any, tables: tuple[dict[str, dict[str, Any]], ...]) -> None:
    """Set the attributes ``tables`` name for ``item``'s classes that its state lacks."""
    state = getattr(item, "__dict__", None)
    if state is None:
        return
    for cls in type(item).__mro__:
        for table in tables:
            for name, value in table.get(cls.__name__, {}).items():
                if name not in state:
                    state[name] = _fresh(value)


def _fresh(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


def upgrade_vision_tail(obj: Any) -> Any:
    """``obj``, and where it is a ``VisionTail`` written by older code, converted in place into the current one
    (digest, views and settings kept, so cached embeddings stay valid):

    * written before serving kept its own graphs (its state holds the fitted ``TailClassifier``, which serving
      ran through torch): the classifier's serving graph exported once here (this needs torch);
    * written before the one serving graph (its state holds ``graphs``: the ``joint`` and ``tuned`` graphs):
      the two joined into the one graph serving runs (``skutag.vision.tail.graphs.one_graph_from_two``, ONNX
      only), one session run per batch as for a tail trained now.

    Any other object is returned as it is."""
    state = getattr(obj, "__dict__", None)
    if type(obj).__name__ != "VisionTail" or state is None:
        return obj
    if "classifier" in state:
        from skutag.vision.tail.train import serving_tail

        current = serving_tail(state["classifier"], views=tuple(state.get("views") or ("center", "flip")),
                               threads=int(state.get("threads") or 1), joint=bool(state.get("joint", True)))
        state.clear()
        state.update(current.__dict__)
    elif "graphs" in state:
        from skutag.vision.tail.graphs import TWO_GRAPHS, one_graph_from_two

        graphs = state.pop("graphs")
        state["graph"] = one_graph_from_two(*(graphs[name] for name in TWO_GRAPHS))
    return obj
