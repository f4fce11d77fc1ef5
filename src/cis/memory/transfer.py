"""Import and export of memories as JSON Lines (or a JSON list), round-tripping exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

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


def write_export(memories: Iterator[tuple[Memory, bytes | None]], out: IO[bytes]) -> int:
    count = 0
    for line in export_lines(memories):
        out.write(line)
        count += 1
    return count


def parse_import(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs of a .jsonl or .json file; InvalidInput lists bad lines."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    records: list[tuple[int, Any]] = []
    errors: list[str] = []
    if path.suffix.lower() == ".json":
        try:
            items = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(items, list):
            raise InvalidInput(f"{path}: a .json import must hold a list of memory objects")
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
        raise_errors(path, errors)
    return records


def raise_errors(path: Path, errors: list[str]) -> None:
    shown = "\n".join(errors[:MAX_REPORTED])
    more = f"\n... and {len(errors) - MAX_REPORTED} more" if len(errors) > MAX_REPORTED else ""
    raise InvalidInput(f"{path}: nothing imported; {len(errors)} bad record(s):\n{shown}{more}")
