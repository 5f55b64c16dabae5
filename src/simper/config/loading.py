"""Loading a config: a YAML file, then dotted ``key=value`` overrides, then typed construction, with
errors that name the file or override and the key; and writing one back."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from simper.config.train import TrainConfig
from simper.errors import UserError


def field_docs(cls: type = TrainConfig, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """``(dotted key, type, default, help)`` for every leaf field, for ``--help``."""
    rows = []
    for f in dataclasses.fields(cls):
        hints = typing.get_type_hints(cls)
        if dataclasses.is_dataclass(hints[f.name]):
            rows += field_docs(hints[f.name], f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((prefix + f.name, _type_label(hints[f.name]), default, f.metadata.get("help", "")))
    return rows


def load_config(
    path: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    cls: type = TrainConfig,
    values: dict[str, Any] | None = None,
) -> Any:
    """Build a ``cls`` (:class:`TrainConfig` by default) from an optional YAML file, ``key=value``
    overrides, then ``values`` (dotted keys set as they are: command-line flags, already typed).

    Raises:
        UserError: unreadable file, unknown key (with the closest valid one), a value of the wrong
            type, or a broken cross-field rule; the message names the file or override and the key.
    """
    tree: dict[str, Any] = {}
    where = "command line"
    if path is not None:
        where = path
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: cannot read config ({getattr(err, 'strerror', None) or err})") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f":line {mark.line + 1}" if mark else ""
            raise UserError(f"{path}{line}: invalid YAML ({getattr(err, 'problem', None) or err})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"{path}: a config must be a mapping of sections (model, data, training, ...)")
        tree = loaded or {}
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise UserError(f"override {override!r}: expected key=value, e.g. training.learning_rate=1e-6")
        _set_dotted(tree, key.strip(), yaml.safe_load(value) if value.strip() else "", override)
    for key, value in (values or {}).items():
        _set_dotted(tree, key, value, f"--{key.replace('_', '-')}")
    try:
        return _build(cls, tree, "", where)
    except ValueError as err:
        raise UserError(f"{where}: {err}") from None


def _set_dotted(tree: dict[str, Any], key: str, value: Any, override: str) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"override {override!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, values: Any, prefix: str, where: str, root: type | None = None) -> Any:
    if not isinstance(values, dict):
        raise UserError(f"{where}: {prefix.rstrip('.') or 'config'}: expected a section (mapping), got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields)
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            if not close:  # a leaf key put in the wrong section, e.g. model.learning_rate
                every = [name for name, *_ in field_docs(root or cls)]
                close = (
                    difflib.get_close_matches(f"{prefix}{key}", every, n=1)
                    or [name for name in every if name.endswith(f".{key}")][:1]
                )
                suggestion = f"; did you mean {close[0]}?" if close else ""
            else:
                suggestion = f"; did you mean {prefix}{close[0]}?"
            raise UserError(f"{where}: unknown key {prefix}{key}{suggestion}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value if value is not None else {}, f"{prefix}{key}.", where, root or cls)
        elif fields[key].metadata.get("whole_items") and isinstance(value, list | str):
            items = [value] if isinstance(value, str) else value
            kwargs[key] = [_coerce(item, str, f"{prefix}{key}", where) for item in items]
        else:
            kwargs[key] = _coerce(value, hint, f"{prefix}{key}", where)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """Check ``value`` against the annotation, converting what YAML leaves as strings (``1e-6``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    expected = _type_label(hint)  # the whole annotation: "true/false | null", not only its last option
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options[:-1]:  # the first type the value fits, e.g. bool | str: true, then "chosen"
            try:
                return _coerce(value, option, key, where)
            except UserError:
                pass
        hint = options[-1]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            raise TypeError
        if hint is int:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, float) and value.is_integer():
                return int(value)
            return int(value) if isinstance(value, int | str) else _raise()
        if hint is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value) if isinstance(value, int | float | str) else _raise()
        if hint is str:
            if isinstance(value, str):
                return value
            if isinstance(value, int | float) and not isinstance(value, bool):
                return str(value)
            raise TypeError
        if origin is list:
            items = value if isinstance(value, list) else [value] if isinstance(value, str) else _raise()
            items = [item for part in items for item in (part.split(",") if isinstance(part, str) else [part])]
            return [_coerce(item, args[0], key, where) for item in items if item != ""]
        if origin is dict:
            if not isinstance(value, dict):
                raise TypeError
            return {str(k): _coerce(v, args[1], f"{key}.{k}", where) for k, v in value.items()}
    except (TypeError, ValueError):
        raise UserError(f"{where}: {key}: expected {expected}, got {value!r}") from None
    raise UserError(f"{where}: {key}: unsupported type {hint}")  # pragma: no cover - a programming error


def _raise() -> Any:
    raise TypeError


def _type_label(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return " | ".join(_type_label(a) for a in args)
    if origin is list:
        return f"list of {_type_label(args[0])}"
    if origin is dict:
        return f"mapping of {_type_label(args[1])}"
    return {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        type(None): "null",
    }.get(hint, str(hint))


def save_config(config: Any, path: Path) -> None:
    """Write the resolved config as YAML (loadable again with :func:`load_config` and its class)."""
    path.write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False), encoding="utf-8")
