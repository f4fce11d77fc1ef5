"""Import and export of memories as JSON Lines (or a JSON list), round-tripping exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from ..errors import InvalidInput
from ..index import stored
from ..model import Memory

MAX_REPORTED = 20


def export_lines(memories: Iterator[tuple[Memory, bytes | None]], dim: int) -> Iterator[bytes]:
    """One JSON object per memory, newline-terminated; a supplied vector (of `dim`
    numbers) as `embedding`."""
    encoder = msgspec.json.Encoder()
    for memory, vector in memories:
        if vector is None:
            yield encoder.encode(memory) + b"\n"
        else:
            record = msgspec.to_builtins(memory)
            record["embedding"] = stored.decode([vector], dim)[1].reshape(-1).tolist()
            yield encoder.encode(record) + b"\n"


class Records(msgspec.Struct, kw_only=True):
    """The records of an import file, and what was wrong with the lines that are none."""

    name: str
    records: list[tuple[int, dict[str, Any]]]
    errors: list[tuple[int, str]]
    unit: str = "line"  # "item" in a JSON list


def read_import(path: Path) -> Records:
    """The records of a .jsonl or .json file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    return parse_records(data, str(path), json_list=path.suffix.lower() == ".json")


def parse_records(data: bytes, name: str, *, json_list: bool) -> Records:
    """The records of JSON Lines, or of a JSON list with `json_list`; a line that is not
    a JSON object is an error of its own, so that every bad line is named at once."""
    found = Records(name=name, records=[], errors=[], unit="item" if json_list else "line")
    if json_list:
        try:
            items = msgspec.json.decode(data)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise InvalidInput(f"{name}: not valid JSON ({exc})") from exc
        if not isinstance(items, list):
            raise InvalidInput(f"{name}: a JSON import must hold a list of memory objects")
        numbered = list(enumerate(items, 1))
    else:
        numbered = []
        for number, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                raw.decode("utf-8")
                numbered.append((number, msgspec.json.decode(raw)))
            except UnicodeDecodeError as exc:
                found.errors.append((number, f"invalid UTF-8 at byte {exc.start}"))
            except (msgspec.DecodeError, RecursionError) as exc:
                found.errors.append((number, f"not valid JSON ({exc})"))
    for number, item in numbered:
        if isinstance(item, dict):
            found.records.append((number, item))
        else:
            found.errors.append((number, "expected a JSON object"))
    return found


def raise_errors(found: Records) -> None:
    """InvalidInput naming every bad record, in order, if there is any."""
    if not found.errors:
        return
    errors = [f"{found.unit} {n}: {message}" for n, message in sorted(found.errors)]
    shown = "\n".join(errors[:MAX_REPORTED])
    more = f"\n... and {len(errors) - MAX_REPORTED} more" if len(errors) > MAX_REPORTED else ""
    raise InvalidInput(
        f"{found.name}: nothing imported; {len(errors)} bad record(s):\n{shown}{more}"
    )
