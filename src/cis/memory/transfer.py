"""Import and export of memories as JSON Lines (or a JSON list), round-tripping exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from ..errors import InvalidInput
from ..model import Memory

MAX_REPORTED = 20


def export_lines(memories: Iterator[tuple[Memory, bytes | None]]) -> Iterator[bytes]:
    """One JSON object per memory, newline-terminated; a supplied vector as `embedding`."""
    encoder = msgspec.json.Encoder()
    for memory, vector in memories:
        if vector is None:
            yield encoder.encode(memory) + b"\n"
        else:
            record = msgspec.to_builtins(memory)
            record["embedding"] = np.frombuffer(vector, dtype=np.float32).tolist()
            yield encoder.encode(record) + b"\n"


def read_import(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs of a .jsonl or .json file; InvalidInput lists bad lines."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    return parse_records(data, str(path), json_list=path.suffix.lower() == ".json")


def parse_records(data: bytes, name: str, *, json_list: bool) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs of JSON Lines, or of a JSON list with `json_list`."""
    records: list[tuple[int, Any]] = []
    errors: list[str] = []
    if json_list:
        try:
            items = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"{name}: not valid JSON ({exc})") from exc
        if not isinstance(items, list):
            raise InvalidInput(f"{name}: a JSON import must hold a list of memory objects")
        records = [(i, item) for i, item in enumerate(items, 1)]
        where = "item"
    else:
        where = "line"
        for number, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                raw.decode("utf-8")
                records.append((number, msgspec.json.decode(raw)))
            except UnicodeDecodeError as exc:
                errors.append(f"line {number}: invalid UTF-8 at byte {exc.start}")
            except msgspec.DecodeError as exc:
                errors.append(f"line {number}: not valid JSON ({exc})")
    for number, item in records:
        if not isinstance(item, dict):
            errors.append(f"{where} {number}: expected a JSON object")
    if errors:
        raise_errors(name, errors)
    return records


def raise_errors(name: str, errors: list[str]) -> None:
    shown = "\n".join(errors[:MAX_REPORTED])
    more = f"\n... and {len(errors) - MAX_REPORTED} more" if len(errors) > MAX_REPORTED else ""
    raise InvalidInput(f"{name}: nothing imported; {len(errors)} bad record(s):\n{shown}{more}")
