"""The managed label map (标签层级映射): vision label -> category path in the shop's tree.

Entries carry the label text and, for a fixed-vocabulary backbone, the class index. Lookups by index
come first, so renaming a label's text (a better Chinese name) never breaks the map. The bundled
default covers the product-like ImageNet-1k classes of the default backbone (bottles, cups, shoes,
food, electronics...) mapped onto the bundled JD tree.

Files: TSV/CSV with a header ``index,label,path`` (``index`` may be empty; an optional ``note`` or
``label_en`` column is kept as a note), or JSON/YAML ``{"entries": [{"label", "path", "index", "note"}]}``
(a plain ``{label: path}`` mapping is read too).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .files import Table, document_records, read_table_or_document
from .tree import PATH_SEPARATOR, CategoryTree, TaxonomyError, join_path, split_path

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_LABELMAP_FILE = DATA_DIR / "labelmap_imagenet.tsv"
# The vision stage writes the backbone's Chinese labels here (line i = class i).
BACKBONE_LABELS_FILE = Path(__file__).resolve().parent.parent / "models" / "imagenet-1k" / "labels_zh.txt"
_FORMAT_TAG = "skutag-labelmap"


class LabelMapError(TaxonomyError):
    """A label map (file or edit) that breaks the rules; the message names the bad row or entry."""


@dataclass(frozen=True)
class LabelMapEntry:
    label: str
    path: tuple[str, ...]
    index: int | None = None
    note: str = ""

    @property
    def path_string(self) -> str:
        return join_path(self.path)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "path": self.path_string, "index": self.index, "note": self.note}


def _label_key(label: str) -> str:
    return " ".join(str(label).split()).casefold()


def _parse_index(value: Any, where: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        index = int(str(value).strip())
    except ValueError:
        raise LabelMapError(f"{where}: index {value!r} is not an integer") from None
    if index < 0:
        raise LabelMapError(f"{where}: index {index} is negative")
    return index


def _make_entry(label: Any, path: Any, index: Any, note: Any, where: str) -> LabelMapEntry:
    text = " ".join(str(label or "").split())
    if not text:
        raise LabelMapError(f"{where}: empty label")
    if path is None or (isinstance(path, str) and not path.strip()):
        raise LabelMapError(f"{where}: empty category path for label {text!r}")
    try:
        names = split_path(path)
    except TaxonomyError as exc:
        raise LabelMapError(f"{where}: {exc}") from None
    return LabelMapEntry(label=text, path=names, index=_parse_index(index, where), note=str(note or "").strip())


class LabelMap:
    """label -> category path, with CRUD, file round-trips and a content version."""

    def __init__(self, entries: Iterable[LabelMapEntry] = ()):
        self._entries: list[LabelMapEntry] = []
        self._by_label: dict[str, LabelMapEntry] = {}
        self._by_index: dict[int, LabelMapEntry] = {}
        self._version: str | None = None
        self._build([(entry, f"entry {entry.label!r}") for entry in entries])

    def _build(self, rows: list[tuple[LabelMapEntry, str]]) -> None:
        by_label: dict[str, tuple[LabelMapEntry, str]] = {}
        by_index: dict[int, tuple[LabelMapEntry, str]] = {}
        for entry, where in rows:
            if entry.index is not None:
                if entry.index in by_index:
                    raise LabelMapError(f"{where}: duplicate index {entry.index} (first at {by_index[entry.index][1]})")
                by_index[entry.index] = (entry, where)
            key = _label_key(entry.label)
            previous = by_label.get(key)
            if previous is not None:
                # The same label text may repeat under different indices (ImageNet has three such
                # names) only when it maps to the same place; otherwise text lookups are ambiguous.
                if entry.index is None or previous[0].index is None or previous[0].path != entry.path:
                    raise LabelMapError(
                        f"{where}: label {entry.label!r} already mapped at {previous[1]}"
                        + (f" to {previous[0].path_string!r}" if previous[0].path != entry.path else "")
                    )
                continue
            by_label[key] = (entry, where)
        self._entries = [entry for entry, _ in rows]
        self._by_label = {key: value[0] for key, value in by_label.items()}
        self._by_index = {key: value[0] for key, value in by_index.items()}
        self._version = None

    # ------------------------------------------------------------------ construction / files
    @classmethod
    def default(cls, labels: Sequence[str] | None = None) -> "LabelMap":
        """The bundled ImageNet-1k map onto the bundled JD tree. Label texts are refreshed by index from
        ``labels`` or, when present, the backbone's ``models/imagenet-1k/labels_zh.txt``."""
        mapping = cls.load(DEFAULT_LABELMAP_FILE)
        if labels is None and BACKBONE_LABELS_FILE.is_file():
            labels = BACKBONE_LABELS_FILE.read_text(encoding="utf-8").splitlines()
        return mapping.with_labels(labels) if labels is not None else mapping

    @classmethod
    def active(cls) -> "LabelMap":
        """The user's managed map (``$SKUTAG_HOME/taxonomy/labelmap.tsv``, written by ``skutag labelmap``), else
        the bundled one: what tagging reads."""
        from .home import user_labelmap_path

        path = user_labelmap_path()
        return cls.load(path) if path.is_file() else cls.default()

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str | Sequence[str]]) -> "LabelMap":
        rows = [(_make_entry(label, path, None, "", f"key {label!r}"), f"key {label!r}") for label, path in mapping.items()]
        result = cls()
        result._build(rows)
        return result

    @classmethod
    def load(cls, path: str | Path) -> "LabelMap":
        """A label map file (.tsv/.csv/.json/.yaml); anything wrong in it is a LabelMapError naming the file."""
        path = Path(path)
        try:
            return cls._load(path)
        except (TypeError, AttributeError) as exc:  # a hand-edited value of the wrong kind (a number for a path ...)
            raise LabelMapError(f"{path}: a value of the wrong kind ({exc})") from None

    @classmethod
    def _load(cls, path: Path) -> "LabelMap":
        found = read_table_or_document(path, LabelMapError, "label map")
        if isinstance(found, Table):
            return cls.loads_table(found.text, found.delimiter, source=path.name)
        return cls.from_document(found, source=path.name)

    @classmethod
    def loads_table(cls, text: str, delimiter: str = "\t", source: str = "table") -> "LabelMap":
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        try:
            header = [column.strip().lower() for column in next(reader)]
        except StopIteration:
            raise LabelMapError(f"{source}: empty file (expected a header row)") from None
        if "label" not in header or "path" not in header:
            raise LabelMapError(f"{source}: header must have 'label' and 'path' columns (and optional 'index'); got {header}")
        rows = []
        for number, values in enumerate(reader, start=2):
            if not any(value.strip() for value in values):
                continue
            where = f"{source} row {number}"
            if len(values) > len(header):
                raise LabelMapError(f"{where}: {len(values)} columns, header has {len(header)}")
            record = dict(zip(header, values))
            note = record.get("note") or record.get("label_en") or ""
            rows.append((_make_entry(record.get("label"), record.get("path"), record.get("index"), note, where), where))
        result = cls()
        result._build(rows)
        return result

    @classmethod
    def from_document(cls, data: Any, source: str = "document") -> "LabelMap":
        if isinstance(data, Mapping) and "entries" in data:
            items = data["entries"]
        elif isinstance(data, list):
            items = data
        elif isinstance(data, Mapping):
            try:
                return cls.from_mapping({str(k): v for k, v in data.items()})
            except LabelMapError as exc:
                raise LabelMapError(f"{source}: {exc}") from None
        else:
            raise LabelMapError(f"{source}: expected a mapping or a list, got {type(data).__name__}")
        rows = [
            (_make_entry(item.get("label"), item.get("path"), item.get("index"), item.get("note"), where), where)
            for where, item in document_records(items, source, "entries", "entry", "label/path", LabelMapError)
        ]
        result = cls()
        result._build(rows)
        return result

    def to_document(self) -> dict[str, Any]:
        return {"format": _FORMAT_TAG, "version": self.version, "entries": [e.to_json() for e in self._entries]}

    def dumps_table(self, delimiter: str = "\t") -> str:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
        writer.writerow(["index", "label", "path", "note"])
        for entry in self._entries:
            writer.writerow(["" if entry.index is None else entry.index, entry.label, entry.path_string, entry.note])
        return out.getvalue()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in {".tsv", ".csv", ".txt"}:
            text = self.dumps_table("," if suffix == ".csv" else "\t")
        elif suffix == ".json":
            text = json.dumps(self.to_document(), ensure_ascii=False, indent=1) + "\n"
        elif suffix in {".yaml", ".yml"}:
            import yaml

            text = yaml.safe_dump(self.to_document(), allow_unicode=True, sort_keys=False)
        else:
            raise LabelMapError(f"{path}: label map files must be .tsv, .csv, .json, .yaml or .yml")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return path

    # ------------------------------------------------------------------ queries
    @property
    def version(self) -> str:
        """First 12 hex digits of the sha256 of the canonical content; changes with every edit."""
        if self._version is None:
            canonical = sorted(
                (-1 if e.index is None else e.index, e.label, e.path_string, e.note) for e in self._entries
            )
            blob = json.dumps(canonical, ensure_ascii=False, separators=(",", ":"))
            self._version = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]
        return self._version

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[LabelMapEntry]:
        return iter(list(self._entries))

    def __contains__(self, label: object) -> bool:
        return isinstance(label, str) and _label_key(label) in self._by_label

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self.version == other.version

    def __repr__(self) -> str:
        return f"LabelMap({len(self._entries)} entries, version {self.version})"

    def entries(self) -> list[LabelMapEntry]:
        return list(self._entries)

    def get(self, ref: str | int) -> LabelMapEntry:
        """An entry by label text or class index; KeyError naming it when absent."""
        entry = self._find(ref)
        if entry is None:
            raise KeyError(f"no label map entry for {ref!r}")
        return entry

    def _find(self, ref: str | int) -> LabelMapEntry | None:
        if isinstance(ref, int) and not isinstance(ref, bool):
            return self._by_index.get(ref)
        return self._by_label.get(_label_key(ref))

    def lookup(self, label: str | None = None, index: int | None = None) -> tuple[str, ...] | None:
        """The category path for a vision label (index first, then label text); None when unmapped."""
        if index is not None:
            entry = self._by_index.get(int(index))
            if entry is not None:
                return entry.path
        if label:
            entry = self._by_label.get(_label_key(label))
            if entry is not None:
                return entry.path
        return None

    def labels_under(self, path: str | Sequence[str]) -> list[LabelMapEntry]:
        """Entries whose path equals or lies below ``path``."""
        prefix = split_path(path)
        return [e for e in self._entries if e.path[: len(prefix)] == prefix]

    def words(self) -> list[str]:
        """Every label text (for tokenizer user dictionaries)."""
        return list(dict.fromkeys(e.label for e in self._entries))

    def problems(self, tree: CategoryTree, num_classes: int | None = None) -> list[str]:
        """What does not fit ``tree`` (unknown paths, paths ending above a leaf) or a backbone with
        ``num_classes`` classes; empty when all is well."""
        found = []
        for entry in self._entries:
            name = f"label {entry.label!r}" + (f" (index {entry.index})" if entry.index is not None else "")
            node = tree.find_path(entry.path)
            if node is None:
                found.append(f"{name}: path {entry.path_string!r} is not in the tree")
            elif not tree.is_leaf(node.id):
                found.append(f"{name}: path {entry.path_string!r} is not a leaf")
            if num_classes is not None and entry.index is not None and entry.index >= num_classes:
                found.append(f"{name}: index {entry.index} >= {num_classes} classes")
        return found

    # ------------------------------------------------------------------ edits
    def add(self, label: str, path: str | Sequence[str], index: int | None = None, note: str = "") -> LabelMapEntry:
        entry = _make_entry(label, path, index, note, f"add {label!r}")
        self._apply([*self._entries, entry], "add")
        return entry

    def update(
        self,
        ref: str | int,
        path: str | Sequence[str] | None = None,
        label: str | None = None,
        index: int | None | type[Ellipsis] = ...,  # type: ignore[valid-type]
        note: str | None = None,
    ) -> LabelMapEntry:
        """Change an entry found by label or index (``index=None`` clears it, ``...`` leaves it)."""
        old = self.get(ref)
        new = _make_entry(
            label if label is not None else old.label,
            path if path is not None else old.path,
            old.index if index is ... else index,
            note if note is not None else old.note,
            f"update {ref!r}",
        )
        self._apply([new if e is old else e for e in self._entries], "update")
        return new

    def delete(self, ref: str | int) -> LabelMapEntry:
        """Remove an entry found by index, or every entry with that label text."""
        entry = self.get(ref)
        if isinstance(ref, int) and not isinstance(ref, bool):
            keep = [e for e in self._entries if e is not entry]
        else:
            keep = [e for e in self._entries if _label_key(e.label) != _label_key(entry.label)]
        self._apply(keep, "delete")
        return entry

    def with_labels(self, labels: Sequence[str]) -> "LabelMap":
        """A copy whose label texts come from ``labels`` (line i = class i) for entries with an index."""
        entries = []
        for entry in self._entries:
            if entry.index is not None and entry.index < len(labels) and str(labels[entry.index]).strip():
                entry = replace(entry, label=" ".join(str(labels[entry.index]).split()))
            entries.append(entry)
        return LabelMap(entries)

    def _apply(self, entries: list[LabelMapEntry], what: str) -> None:
        saved = (self._entries, self._by_label, self._by_index, self._version)
        try:
            self._build([(e, f"{what}: entry {e.label!r}") for e in entries])
        except LabelMapError:
            self._entries, self._by_label, self._by_index, self._version = saved
            raise

    def copy(self) -> "LabelMap":
        return LabelMap(self._entries)


__all__ = ["LabelMap", "LabelMapEntry", "LabelMapError", "PATH_SEPARATOR", "DEFAULT_LABELMAP_FILE"]
