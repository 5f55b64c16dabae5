"""Read raw rows from preference files, ``save_to_disk`` folders and hub datasets.

Every row keeps its origin (``file:line N`` or ``file:row N``) so that any later error can name
where the bad value came from. Nothing here knows about preference formats.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simper.errors import UserError, first_line

FILE_TYPES = (".jsonl", ".json", ".parquet", ".csv")


@dataclass(frozen=True)
class Row:
    """One raw record and where it came from (``data.jsonl:line 3``)."""

    values: dict[str, Any]
    origin: str


def read_rows(source: str, split: str = "train") -> list[Row]:
    """Read every row of one source.

    Args:
        source: a local ``.jsonl``/``.json``/``.parquet``/``.csv`` file, a ``datasets.save_to_disk``
            folder, or a hub dataset id; a hub id or folder may name its split after a colon
            (``HuggingFaceH4/ultrafeedback_binarized:train_prefs``).
        split: the split to take when the source does not name one.

    Raises:
        UserError: the source is missing, unreadable, empty or malformed; the message names the
            file and the line or row.
    """
    name, _, named_split = source.partition(":") if not os.path.exists(source) else (source, "", "")
    split = named_split or split
    path = Path(name)
    if path.is_dir():
        rows = _read_saved_dataset(path, split, bool(named_split))
    elif path.exists():
        rows = list(_read_file(path))
    elif path.suffix.lower() in FILE_TYPES or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise UserError(f"{source}: no such file or folder")
    else:
        rows = _read_hub_dataset(name, split)
    if not rows:
        raise UserError(f"{source}: no rows (the file is empty or holds only blank lines)")
    return rows


def _read_file(path: Path) -> Iterator[Row]:
    suffix = path.suffix.lower()
    if suffix not in FILE_TYPES:
        raise UserError(f"{path}: unknown file type {suffix or '(none)'!r}; expected one of {', '.join(FILE_TYPES)}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    if suffix == ".parquet":
        yield from _read_parquet(path)
        return
    text = _decode(path, data)
    if suffix == ".csv":
        yield from _read_csv(path, text)
    elif suffix == ".json" and text.lstrip().startswith("["):
        yield from _read_json_array(path, text)
    else:  # .jsonl, and .json files that hold JSON lines
        yield from _read_json_lines(path, text)


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # a leading BOM is accepted and dropped
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UserError(f"{path}:line {line}: invalid UTF-8 (byte 0x{data[err.start]:02x})") from None


def _read_json_lines(path: Path, text: str) -> Iterator[Row]:
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 may sit inside a string
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:line {number}: invalid JSON ({err.msg} at column {err.colno})") from None
        yield _as_row(value, f"{path}:line {number}")


def _read_json_array(path: Path, text: str) -> Iterator[Row]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:line {err.lineno}: invalid JSON ({err.msg} at column {err.colno})") from None
    for number, value in enumerate(values, start=1):
        yield _as_row(value, f"{path}:item {number}")


def _as_row(value: Any, origin: str) -> Row:
    if not isinstance(value, dict):
        raise UserError(f"{origin}: expected a JSON object with the pair's fields, got {_type_name(value)}")
    return Row(value, origin)


def _read_csv(path: Path, text: str) -> Iterator[Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return
    for number, fields in enumerate(reader, start=2):
        if not any(field.strip() for field in fields):
            continue
        if len(fields) != len(header):
            raise UserError(f"{path}:row {number}: {len(fields)} fields where the header has {len(header)}")
        yield Row(dict(zip(header, fields, strict=True)), f"{path}:row {number}")


def _read_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a bad file
        raise UserError(f"{path}: not a readable Parquet file ({err})") from None
    for number, values in enumerate(table.to_pylist(), start=1):
        yield Row(values, f"{path}:row {number}")


def source_identity(source: str, split: str) -> tuple[str, str | None]:
    """What a source reads, to tell two sources apart: a file or a one-dataset folder by its real path
    (it has no splits), a folder of splits or a hub dataset by name and split."""
    name, _, named_split = source.partition(":") if not os.path.exists(source) else (source, "", "")
    path = Path(name)
    if path.exists():
        splits = path.is_dir() and (path / "dataset_dict.json").exists()
        return os.path.realpath(path), (named_split or split) if splits else None
    return name, named_split or split


def _read_saved_dataset(path: Path, split: str, named: bool = False) -> list[Row]:
    import datasets

    if not any((path / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json", "state.json")):
        raise UserError(f"{path}: is a folder, not a data file or a datasets.save_to_disk folder")
    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable datasets.save_to_disk folder: {first_line(err)}") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise UserError(f"{path}: no split {split!r}; it has: {', '.join(loaded)}")
        loaded = loaded[split]
    elif named:
        raise UserError(f"{path}: holds one dataset, without splits, so there is no split {split!r} to take")
    return [Row(values, f"{path}:row {number}") for number, values in enumerate(loaded, start=1)]


def _read_hub_dataset(name: str, split: str) -> list[Row]:
    import datasets

    try:
        loaded = datasets.load_dataset(name, split=split)
    except Exception as err:  # offline, unknown id, missing split: all reported the same way
        hint = (
            " (HF_HUB_OFFLINE=1 is set: download it once with network access, or pass a local file)"
            if os.environ.get("HF_HUB_OFFLINE") == "1"
            else ""
        )
        raise UserError(f"{name}: cannot load hub dataset split {split!r}: {first_line(err)}{hint}") from None
    return [Row(values, f"{name}[{split}]:row {number}") for number, values in enumerate(loaded, start=1)]


def _type_name(value: Any) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)
