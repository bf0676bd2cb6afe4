"""Model bundles: a trained fusion model on disk, with a manifest, versions kept, and rollback.

Layout of a model directory (a *store*)::

    MODEL_DIR/
      CURRENT              the version in use, e.g. "v0002"
      v0001/manifest.json  what the version is: library versions, taxonomy / label map / lexicon
      v0001/model.joblib   versions, vision model, training-data hash, metrics, config
      v0001/training.joblib  the training evidence (so `retrain` needs no original photos)
      v0001/calibration.joblib  the calibration evidence of a calibrated version (`retrain` calibrates
                           the new version on it again)
      v0001/vision_tail.joblib  the fine-tuned vision tail of a model trained with one (serving runs it)
      v0001/training_features.npz  the training rows' features, in training.joblib's order (an incremental
                           `retrain` featurizes only the corrections); optional
      v0002/...

The ``.joblib`` files are gzip'd standard pickles (bundle format 4; formats 1-3 wrote them with joblib, and
``migrate.load_file`` reads both).

Saving adds a version and points CURRENT at it; nothing is overwritten. ``rollback`` points CURRENT
back at an earlier version. Loading checks the manifest *before* unpickling anything: a bundle made
with another bundle format, another scikit-learn minor version or another numpy major version fails
with a message that says what to do.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .migrate import (
    BUNDLE_FORMAT,
    READABLE_FORMATS,
    dump_file,
    load_file,
    upgrade_loaded_manifest,
    upgrade_manifest,
    upgrade_object,
)

MANIFEST = "manifest.json"
MODEL_FILE = "model.joblib"
TRAINING_FILE = "training.joblib"
CALIBRATION_FILE = "calibration.joblib"
TAIL_FILE = "vision_tail.joblib"
FEATURES_FILE = "training_features.npz"
CURRENT = "CURRENT"
_VERSION_RE = re.compile(r"^v(\d{4,})$")


class BundleError(ValueError):
    """A model bundle that cannot be used here; the message says why and what to do."""


@dataclass(frozen=True)
class BundleVersion:
    store: Path
    name: str

    @property
    def path(self) -> Path:
        return self.store / self.name

    def manifest(self) -> dict[str, Any]:
        """The version's manifest as the current format writes it (older formats upgraded)."""
        return upgrade_manifest(read_manifest(self.path))

    @property
    def file_format(self) -> int:
        """The bundle format its files were written in."""
        found = read_manifest(self.path).get("format")
        return found if isinstance(found, int) else BUNDLE_FORMAT


def library_versions() -> dict[str, str]:
    import numpy
    import scipy
    import sklearn

    try:
        from importlib.metadata import version

        skutag_version = version("skutag")
    except Exception:  # noqa: BLE001 - not installed as a distribution (plain checkout)
        skutag_version = "unknown"
    return {"python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__, "skutag": skutag_version}


def _minor(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:2])


def check_compatible(manifest: Mapping[str, Any], where: Path, *, refitting: bool = False) -> None:
    """Raise ``BundleError`` when this install cannot load a bundle with this manifest. ``refitting``: only its
    kept training rows are read (plain arrays), to fit the model again, so library versions do not matter."""
    fmt = manifest.get("format")
    if fmt not in READABLE_FORMATS:
        raise BundleError(f"model bundle {where} has format {fmt!r}; this skutag reads formats "
                          f"{', '.join(map(str, READABLE_FORMATS))}. "
                          "Retrain it with `skutag train` on this version.")
    if refitting:
        return
    made = manifest.get("libraries", {})
    here = library_versions()
    if _minor(made.get("scikit-learn", "0")) != _minor(here["scikit-learn"]):
        raise BundleError(
            f"model bundle {where} was made with scikit-learn {made.get('scikit-learn')}; this install has "
            f"{here['scikit-learn']}. Pickled estimators are not portable across scikit-learn minor versions: "
            f"install scikit-learn=={'.'.join(map(str, _minor(made.get('scikit-learn', '0'))))}.* or fit it again on "
            f"its kept rows with this install (`skutag retrain --model {where} --out NEW_DIR`).")
    if _minor(made.get("numpy", "0"))[:1] != _minor(here["numpy"])[:1]:
        raise BundleError(f"model bundle {where} was made with numpy {made.get('numpy')}; this install has "
                          f"{here['numpy']} (another major version). Install numpy {made.get('numpy')} or fit it "
                          f"again on its kept rows (`skutag retrain --model {where} --out NEW_DIR`).")


def read_manifest(path: Path) -> dict[str, Any]:
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise BundleError(f"not a model bundle: {path} has no {MANIFEST}")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"model bundle manifest {file} is not valid JSON: {exc}") from None


# ---------------------------------------------------------------------- store
def is_store(path: Path) -> bool:
    return (Path(path) / CURRENT).is_file()


def versions(store: str | Path) -> list[BundleVersion]:
    store = Path(store)
    if not store.is_dir():
        return []
    names = sorted((p.name for p in store.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)
                    and (p / MANIFEST).is_file()), key=lambda n: int(n[1:]))
    return [BundleVersion(store, n) for n in names]


def current(store: str | Path) -> BundleVersion:
    store = Path(store)
    marker = store / CURRENT
    if not marker.is_file():
        raise BundleError(f"{store} is not a model directory (no {CURRENT} file); train one with "
                          f"`skutag train CATALOG --out {store}`")
    name = marker.read_text(encoding="utf-8").strip()
    if name not in _version_names(store):
        raise BundleError(f"{store}/{CURRENT} names version {name!r}, which is missing or not one of its versions "
                          f"({_known_versions(store)}); use `skutag bundle rollback {store} --to VERSION` "
                          "to pick one that exists")
    return BundleVersion(store, name)


def _version_names(store: Path) -> list[str]:
    return [v.name for v in versions(store)]


def _known_versions(store: Path) -> str:
    return "versions: " + (", ".join(_version_names(store)) or "none")


def resolve(path: str | Path) -> BundleVersion:
    """A store (its current version) or one version folder."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"model directory not found: {path}")
    if is_store(path):
        return current(path)
    if (path / MANIFEST).is_file():
        return BundleVersion(path.parent, path.name)
    raise BundleError(f"not a model directory: {path} (expected a {CURRENT} file or a {MANIFEST})")


def set_current(store: str | Path, name: str) -> BundleVersion:
    """Point CURRENT at ``name``, which must be one of this store's versions (a bare name like ``v0002``)."""
    store = Path(store)
    if name not in _version_names(store):
        raise BundleError(f"no version {name!r} in {store} ({_known_versions(store)}); "
                          "name one of them, e.g. `--to v0001`")
    fd, tmp = tempfile.mkstemp(dir=store, prefix=".current-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(name + "\n")
    os.replace(tmp, store / CURRENT)
    return BundleVersion(store, name)


def rollback(store: str | Path, to: str | None = None) -> BundleVersion:
    """Point CURRENT at ``to``, or at the version before the current one."""
    store = Path(store)
    if to is not None:
        return set_current(store, to)
    now = current(store)
    names = [v.name for v in versions(store)]
    position = names.index(now.name)
    if position == 0:
        raise BundleError(f"{store}: {now.name} is the oldest version; nothing to roll back to")
    return set_current(store, names[position - 1])


def save(store: str | Path, model: Any, manifest: Mapping[str, Any], training: Any = None,
         calibration: Any = None, vision_tail: Any = None, features: Any = None) -> BundleVersion:
    """Write a new version into ``store`` and make it current. ``features``: the training rows' feature matrix
    (sparse, rows in ``training``'s order), kept as float32 for incremental updates."""
    store = Path(store)
    if store.exists() and not store.is_dir():
        raise BundleError(f"cannot write a model directory at {store}: it is a file")
    if store.is_dir() and any(store.iterdir()) and not is_store(store):
        raise BundleError(f"{store} exists and is not a model directory; choose an empty or new folder")
    store.mkdir(parents=True, exist_ok=True)
    existing = versions(store)
    number = int(existing[-1].name[1:]) + 1 if existing else 1
    name = f"v{number:04d}"
    staging = Path(tempfile.mkdtemp(dir=store, prefix=f".{name}-"))
    try:
        dump_file(model, staging / MODEL_FILE)
        if training is not None:
            dump_file(training, staging / TRAINING_FILE)
        if calibration is not None:
            dump_file(calibration, staging / CALIBRATION_FILE)
        if vision_tail is not None:
            dump_file(vision_tail, staging / TAIL_FILE)
        if features is not None:
            _save_features(staging / FEATURES_FILE, features)
        full = {"format": BUNDLE_FORMAT, "version": name,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "libraries": library_versions(), **manifest}
        (staging / MANIFEST).write_text(json.dumps(full, ensure_ascii=False, indent=2), encoding="utf-8")
        os.replace(staging, store / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return set_current(store, name)


def load(path: str | Path) -> tuple[Any, dict[str, Any], BundleVersion]:
    """(model, manifest, version) of a store's current version or of one version folder; the manifest as the
    current format writes it, with what an older one lacks filled in from the model."""
    version = resolve(path)
    manifest = version.manifest()
    check_compatible(manifest, version.path)
    if not (version.path / MODEL_FILE).is_file():
        raise BundleError(f"model bundle {version.path} has no {MODEL_FILE}")
    model = _load_file(version, MODEL_FILE)
    return model, upgrade_loaded_manifest(manifest, model, version.file_format), version


def _load_file(version: BundleVersion, file_name: str) -> Any:
    """Unpickle one file of a version, brought to the current format; code missing here or a damaged file is
    a ``BundleError``."""
    file_format = version.file_format
    try:
        return upgrade_object(load_file(version.path / file_name, file_format), file_format)
    except (ModuleNotFoundError, AttributeError, ImportError) as exc:
        raise BundleError(f"model bundle {version.path} needs code this install lacks ({exc}); retrain it") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged pickle fails in many ways (ValueError, EOFError, zlib ...)
        raise BundleError(_damaged_message(version, file_name, exc)) from exc


def _damaged_message(version: BundleVersion, file_name: str, cause: Exception) -> str:
    advice = (f"roll back (`skutag bundle rollback {version.store}`) or retrain" if is_store(version.store)
              else "copy the version folder again or retrain")
    return (f"model bundle {version.path}: {file_name} is unreadable or damaged ({type(cause).__name__}: {cause}); "
            f"{advice}")


def load_calibration(version: BundleVersion) -> Any:
    """The calibration evidence a calibrated version was calibrated on, or None."""
    file = version.path / CALIBRATION_FILE
    return _load_file(version, CALIBRATION_FILE) if file.is_file() else None


def load_tail(version: BundleVersion) -> Any:
    """The fine-tuned vision tail of a version trained with one (``vision.tail.VisionTail``), or None."""
    file = version.path / TAIL_FILE
    if not file.is_file():
        if (version.manifest().get("stages", {}).get("vision") or {}).get("tail"):
            raise BundleError(f"model bundle {version.path} was trained with a fine-tuned vision tail but "
                              f"{TAIL_FILE} is missing; copy the whole version folder or retrain")
        return None
    return _load_file(version, TAIL_FILE)


def _save_features(path: Path, features: Any) -> None:
    import numpy as np
    import scipy.sparse as sp

    matrix = sp.csr_matrix(features)
    matrix = sp.csr_matrix((matrix.data.astype(np.float32, copy=False), matrix.indices, matrix.indptr),
                           shape=matrix.shape)
    sp.save_npz(path, matrix, compressed=False)  # loading is then a plain read, no decompression


def load_training_features(version: BundleVersion, rows: int, columns: int) -> Any:
    """The training rows' features kept with a version (float64 CSR), or None when the version keeps none or
    they do not fit ``rows`` x ``columns`` (then the rows are featurized again)."""
    import numpy as np
    import scipy.sparse as sp

    file = version.path / FEATURES_FILE
    if not file.is_file():
        return None
    try:
        matrix = sp.load_npz(file).tocsr()
    except (OSError, ValueError) as exc:
        raise BundleError(_damaged_message(version, FEATURES_FILE, exc)) from exc
    if matrix.shape != (rows, columns):
        return None
    return matrix.astype(np.float64)


def load_training(version: BundleVersion) -> Any:
    file = version.path / TRAINING_FILE
    if not file.is_file():
        raise BundleError(f"model bundle {version.path} keeps no training data ({TRAINING_FILE}); "
                          "retrain from the original catalog with `skutag train` instead")
    return _load_file(version, TRAINING_FILE)
