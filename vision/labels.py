"""Label lists: the shipped Chinese ImageNet-1k names and label files that come with a checkpoint."""

from __future__ import annotations

from pathlib import Path

from .errors import ModelFilesMissingError

PROJECT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
IMAGENET_ZH = PROJECT_MODELS_DIR / "imagenet-1k" / "labels_zh.txt"


def read_label_file(path: str | Path) -> list[str]:
    """One label per line, or ModelScope's ``meta_info.txt`` rows ``index<TAB>label[<TAB>...]``.

    With the indexed form, rows may come in any order but must cover 0..n-1 exactly once.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFilesMissingError(f"label file not found: {path}")
    lines = [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8-sig").splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ModelFilesMissingError(f"label file is empty: {path}")
    if all("\t" in line for line in lines):
        return _indexed_labels(lines, path)
    return [line.strip() for line in lines]


def _indexed_labels(lines: list[str], path: Path) -> list[str]:
    labels: dict[int, str] = {}
    for number, line in enumerate(lines, 1):
        index_text, label = line.split("\t")[:2]
        try:
            index = int(index_text)
        except ValueError:
            raise ValueError(f"{path}:{number}: expected 'index<TAB>label', got {line!r}") from None
        if index in labels:
            raise ValueError(f"{path}:{number}: class index {index} appears twice")
        labels[index] = label.strip()
    if sorted(labels) != list(range(len(labels))):
        raise ValueError(f"{path}: class indices must be 0..{len(labels) - 1} without gaps")
    return [labels[i] for i in range(len(labels))]


def imagenet_labels_zh() -> list[str]:
    """The 1,000 Chinese ImageNet-1k class names shipped in ``models/imagenet-1k`` (all unique)."""
    if not IMAGENET_ZH.is_file():
        raise ModelFilesMissingError(
            f"the Chinese ImageNet label list is missing: {IMAGENET_ZH} (it ships with the project)"
        )
    labels = read_label_file(IMAGENET_ZH)
    if len(labels) != 1000:
        raise ValueError(f"{IMAGENET_ZH}: expected 1000 labels, found {len(labels)}")
    return labels
