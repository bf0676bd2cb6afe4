"""One config object for the whole application: defaults < file < SKUTAG_* environment < flags.

Each stage owns the dataclass for its own section (``vision.config.VisionConfig`` ...);
this module only composes them, so stages never import the application. Sections are
listed in a registry and imported lazily.

Environment overrides use ``SKUTAG_<SECTION>__<FIELD>``, e.g. ``SKUTAG_VISION__BACKBONE=efficientnet-lite2``.
Flag overrides are dotted keys: ``{"vision.top_k": 10}``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import tomllib
import typing
from pathlib import Path
from typing import Any, Mapping

# section name -> "module:Class". A section whose module is absent in this build is skipped.
SECTION_REGISTRY: dict[str, str] = {
    "vision": "skutag.vision.config:VisionConfig",
    "ocr": "skutag.ocr.config:OcrConfig",
    "text": "skutag.text.config:TextConfig",
    "fusion": "skutag.fusion.config:FusionConfig",
    "decision": "skutag.fusion.config:DecisionConfig",
    "service": "skutag.service.config:ServiceConfig",
    "queue": "skutag.queue.config:QueueConfig",
}

ENV_PREFIX = "SKUTAG_"

# keys that moved to another section: naming the old one says where it lives now
MOVED_KEYS = {
    "service.audit_rate": "decision.audit_rate",
    "service.review_whitelist": "decision.always_review",
}


class ConfigError(ValueError):
    """A config file, variable or flag that does not fit the schema."""


def _section_class(spec: str) -> type | None:
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    return getattr(module, class_name)


class SkutagConfig:
    """Holds one dataclass instance per registered section: ``config.vision.top_k``."""

    def __init__(self, sections: Mapping[str, Any]):
        self._sections = dict(sections)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_sections"][name]
        except KeyError:
            raise AttributeError(f"no config section {name!r}") from None

    def section_names(self) -> list[str]:
        return list(self._sections)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(value) for name, value in self._sections.items()}

    def with_overrides(self, overrides: Mapping[str, Any]) -> "SkutagConfig":
        """A copy with dotted-key overrides applied (``{"vision.top_k": 3}``); None values are ignored."""
        grouped: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            section, _, field_name = key.partition(".")
            if section not in self._sections or not field_name:
                raise ConfigError(f"unknown config key {key!r}")
            grouped.setdefault(section, {})[field_name] = value
        sections = dict(self._sections)
        for section, values in grouped.items():
            sections[section] = _replace_checked(section, sections[section], values)
        return SkutagConfig(sections)

    @classmethod
    def defaults(cls) -> "SkutagConfig":
        sections = {}
        for name, spec in SECTION_REGISTRY.items():
            klass = _section_class(spec)
            if klass is not None:
                sections[name] = klass()
        return cls(sections)

    @classmethod
    def load(
        cls,
        file: str | os.PathLike | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> "SkutagConfig":
        config = cls.defaults()
        if file is not None:
            config = config.with_overrides(_flatten(_read_file(Path(file)), Path(file)))
        env = os.environ if environ is None else environ
        config = config.with_overrides(_env_overrides(env, config))
        return config.with_overrides(overrides or {})


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.suffix not in _PARSERS:
        raise ConfigError(f"config file must be .toml, .yaml or .json: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid UTF-8 (byte {exc.object[exc.start]:#04x} "
                          f"at offset {exc.start}); save it as UTF-8") from None
    data = _PARSERS[path.suffix](path, text)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {path}: the top level must be a table of sections "
                          f"(like [decision]), got {_kind(data)}")
    return dict(data)


def _parse_toml(path: Path, text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = _TOML_POSITION.search(message)
        if where is None:
            raise ConfigError(f"config file {path}: {message}") from None
        raise ConfigError(f"config file {path}: line {where.group(1)}: {message[:where.start()].rstrip()} "
                          f"(column {where.group(2)})") from None


def _parse_yaml(path: Path, text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = ": ".join(part for part in (exc.context, exc.problem) if part)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"config file {path}: {line}{problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def _parse_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path}: line {exc.lineno}: {exc.msg} (column {exc.colno})") from None


_PARSERS = {".toml": _parse_toml, ".yml": _parse_yaml, ".yaml": _parse_yaml, ".json": _parse_json}
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)\s*$")


def _kind(value: Any) -> str:
    return {list: "a list", str: "text", int: "a number", float: "a number", bool: "true/false"}.get(
        type(value), type(value).__name__)


def _flatten(data: Mapping[str, Any], source: Path) -> dict[str, Any]:
    flat = {}
    for section, values in data.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"config file {source}: section {section!r} must be a table (like [{section}]), "
                              f"got {_kind(values)}")
        for key, value in values.items():
            flat[f"{section}.{key}"] = value
    return flat


def _env_overrides(environ: Mapping[str, str], config: SkutagConfig) -> dict[str, Any]:
    found = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, field_name = name[len(ENV_PREFIX):].lower().partition("__")
        if section in config.section_names():
            found[f"{section}.{field_name}"] = raw
    return found


def _replace_checked(section: str, instance: Any, values: Mapping[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(instance)}
    hints = typing.get_type_hints(type(instance))
    coerced = {}
    for name, value in values.items():
        if name not in fields:
            moved = MOVED_KEYS.get(f"{section}.{name}")
            if moved:
                raise ConfigError(f"config key {section}.{name} is now {moved} (one setting for the CLI, batch "
                                  f"jobs and the service); set that instead")
            raise ConfigError(f"unknown config key {section}.{name}")
        coerced[name] = _coerce(f"{section}.{name}", hints.get(name), value)
    try:
        return dataclasses.replace(instance, **coerced)
    except ValueError as exc:  # the section's own checks (__post_init__) name the key
        raise ConfigError(str(exc)) from None
    except TypeError as exc:  # a check that met a value of the wrong type
        raise ConfigError(f"config section {section!r}: {exc}") from None


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Turn strings from the environment into the field's type; check simple types."""
    target = _plain_type(hint)
    if target is None or not isinstance(value, str) or target is str:
        return value
    if target is dict:
        return _json_object(key, value)
    try:
        if target is bool:
            lowered = value.strip().lower()
            if lowered not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(value)
            return lowered in {"1", "true", "yes", "on"}
        if target in (int, float):
            return target(value)
        if target in (list, tuple):
            text = value.strip()
            if text.startswith("[") and (text.endswith("]") or text[1:].lstrip().startswith('"')):
                return target(_json_array(key, value, _item_type(hint)))
            return target(part.strip() for part in value.split(",") if part.strip())
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(f"{key}: cannot read {value!r} as {target.__name__}") from None
    return value


def _json_array(key: str, value: str, item_type: type | None) -> list[Any]:
    """A list field set from the environment as a JSON array, e.g. ``["食品饮料 > 饮料冲调", "A, B"]`` (items
    may hold commas); plain text is split at commas instead."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{key}: cannot read {value!r} as a JSON array: {exc.msg} (column {exc.colno}); "
                          "or give the items separated by commas, without brackets") from None
    if not isinstance(parsed, list) or any(isinstance(item, (list, dict)) for item in parsed):
        raise ConfigError(f"{key}: {value!r} must be a JSON array of plain values")
    if item_type is str and not all(isinstance(item, str) for item in parsed):
        raise ConfigError(f"{key}: {value!r} must be a JSON array of texts (in quotes)")
    return parsed


def _item_type(hint: Any) -> type | None:
    """``str`` for ``tuple[str, ...]`` / ``list[str]`` (optional or not), else None."""
    args = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
    if typing.get_origin(hint) is typing.Union or str(typing.get_origin(hint)) == "<class 'types.UnionType'>":
        return _item_type(args[0]) if len(args) == 1 else None
    return args[0] if len(args) == 1 and isinstance(args[0], type) else None


def _json_object(key: str, value: str) -> dict[str, Any]:
    """A mapping field set from the environment: a JSON object, e.g. ``{"alias": "label"}``."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ConfigError(f"{key}: cannot read {value!r}: it must be a JSON object, e.g. "
                          f"SKUTAG_{key.replace('.', '__').upper()}='{{\"alias\": \"label\"}}'")
    return parsed


def _plain_type(hint: Any) -> type | None:
    origin = typing.get_origin(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _plain_type(args[0]) if len(args) == 1 else None
    if origin in (list, tuple, dict):
        return origin
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return dict
    return hint if isinstance(hint, type) else None
