"""What a shell was given, as the API's typed structures, with errors in plain words.

Every shell (CLI options, HTTP parameters and bodies, MCP tool arguments, Python keyword
arguments) turns its input into the same msgspec structures (Filter, Search, Listing,
request bodies) through these functions, so a wrong type, an unknown field or a NUL
character reads the same everywhere.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from .errors import InvalidInput

T = TypeVar("T")
_TYPE_WORDS = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "null": "null",
    "array": "a list",
    "object": "an object",
}
_EXPECTED = re.compile(
    r"Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`(?: - at `\$(?P<at>[^`]*)`)?"
)
_UNKNOWN = re.compile(
    r"Object contains unknown field `(?P<name>[^`]+)`(?: - at `\$(?P<at>[^`]*)`)?"
)
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]+)`")


def _words(kinds: str) -> str:
    return " or ".join(_TYPE_WORDS.get(k.strip(), k.strip()) for k in kinds.split("|"))


def problem(exc: msgspec.ValidationError, what: str, kind: type | None = None) -> str:
    """A msgspec validation error in plain words: which field, what it must be."""
    text = str(exc)
    found = _EXPECTED.match(text)
    if found:
        field = (found["at"] or "").lstrip(".") or what
        return f"{field} must be {_words(found['want'])}, not {_words(found['got'])}"
    found = _UNKNOWN.match(text)
    if found:
        takes = ", ".join(getattr(kind, "__struct_fields__", ())) if kind else ""
        where = (found["at"] or "").lstrip(".")
        name = f"{where}.{found['name']}" if where else found["name"]
        return f"unknown field {name}" + (f"; {what} takes: {takes}" if takes else "")
    found = _MISSING.match(text)
    if found:
        return f"{what} needs {found['name']}"
    return f"{what}: {text}"


def nul_free(value: Any, what: str) -> None:
    """InvalidInput if any string inside a decoded value holds a NUL character."""
    stack: list[tuple[Any, str]] = [(msgspec.to_builtins(value), what)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise InvalidInput(f"{path} holds a NUL character; remove it")
        elif isinstance(item, dict):
            for key, inner in item.items():
                if "\x00" in str(key):
                    raise InvalidInput(f"{path} has a key with a NUL character; remove it")
                stack.append((inner, f"{path}.{key}" if path else str(key)))
        elif isinstance(item, list | tuple):
            stack.extend((inner, f"{path}[{i}]") for i, inner in enumerate(item))


def convert(fields: dict[str, Any], kind: type[T], what: str = "request") -> T:
    """Plain values (query parameters, tool arguments) as `kind`, checked strictly."""
    try:
        value = msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        raise InvalidInput(problem(exc, what, kind)) from exc
    nul_free(value, "")
    return value


S = TypeVar("S", bound=msgspec.Struct)


def shaped(kind: type[S], **fields: Any) -> S:
    """A Filter, Search or Listing of keyword arguments; InvalidInput for an unknown one."""
    unknown = set(fields) - set(kind.__struct_fields__)
    if unknown:
        raise InvalidInput(
            f"unknown argument(s): {', '.join(sorted(unknown))}; "
            f"takes: {', '.join(kind.__struct_fields__)}"
        )
    return kind(**fields)
