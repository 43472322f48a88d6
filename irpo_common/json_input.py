"""Client JSON read and judged without ever failing the service: strict parsing (UTF-8 only, no
NaN/Infinity, no number that overflows a float, bounded nesting) and validation errors rendered
as a short list that never echoes the input back.

Every wrong input ends in BadJSON (a 400) or a pydantic ValidationError turned into a bounded
422 detail by `validation_detail`; nothing here raises anything else on client bytes.
"""

from __future__ import annotations

import json
import math
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from irpo_common.problem import ErrorItem

MAX_DEPTH = 32  # our bodies nest 4 levels at most; deeper is an attack, not a request
_MAX_ERRORS = 10
_MAX_TEXT = 200

M = TypeVar("M", bound=BaseModel)


class BadJSON(ValueError):
    """Client JSON that cannot be read; the message names the field and the reason (a 400)."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJSON(f"number {_clip(text, 40)} is out of the float range")
    return value


def _no_constant(name: str):
    raise BadJSON(f"{name} is not a JSON number; send finite numbers")


def _depth(value, limit: int) -> int:
    """Nesting depth of parsed JSON, iteratively (no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (dict, list)):
            if d > limit:
                return d
            deepest = max(deepest, d)
            stack.extend((child, d + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def loads(data: bytes | str, *, field: str = "body") -> object:
    """Parse client JSON strictly; raises BadJSON with a precise message (never the input itself)."""
    if isinstance(data, bytes):
        if data[:3] == b"\xef\xbb\xbf" or data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise BadJSON(f"{field}: starts with a byte-order mark; send UTF-8 JSON without one")
        if b"\x00" in data[:4]:  # RFC 8259's encoding sniff: UTF-16/32 put NULs among the first bytes
            raise BadJSON(f"{field}: not UTF-8 (looks like UTF-16 or UTF-32); send UTF-8 JSON")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadJSON(f"{field}: not UTF-8 (invalid byte at offset {exc.start}); send UTF-8 JSON") from None
    try:
        value = json.loads(data, parse_float=_finite, parse_int=_bounded_int, parse_constant=_no_constant)
    except BadJSON as exc:
        raise BadJSON(f"{field}: {exc}") from None
    except RecursionError:
        raise BadJSON(f"{field}: JSON nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise BadJSON(f"{field}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # e.g. Python's limit on the digits of an integer
        raise BadJSON(f"{field}: not valid JSON ({_clip(str(exc), 80)})") from None
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise BadJSON(f"{field}: JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _bounded_int(text: str) -> int | float:
    # Integers become floats where a float is expected: one that overflows a float is refused here.
    value = int(text)
    if abs(value) > 2**1023:
        raise BadJSON(f"number {_clip(text, 40)} is out of the float range")
    return value


def validate(model: type[M], data: bytes | str, *, field: str = "body") -> M:
    """Parse strictly, then validate; raises BadJSON (400) or ValidationError (422)."""
    return model.model_validate(loads(data, field=field))


def _clip(text: str, n: int = _MAX_TEXT) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def validation_detail(exc: ValidationError, prefix: tuple = ()) -> list[dict]:
    """A 422 detail: at most 10 ErrorItems (loc, msg, type), each short, none with the input."""
    out = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False)[:_MAX_ERRORS]:
        loc = [p if isinstance(p, int) else _clip(str(p), 60) for p in (*prefix, *err.get("loc", ()))]
        out.append(ErrorItem(loc=loc, msg=_clip(str(err.get("msg", ""))), type=_clip(str(err.get("type", "")), 60)))
    if exc.error_count() > _MAX_ERRORS:
        out.append(ErrorItem(loc=[], msg=f"{exc.error_count() - _MAX_ERRORS} more error(s) not shown", type="truncated"))
    return [item.model_dump() for item in out]
