"""Lossless binary batch encoding: safetensors bytes (media type application/vnd.safetensors).

Tensors: `restored` (N, 3, H, W) float32/float16/bfloat16 in [0, 1]; optional `reference` of the same shape and
`degraded` of the same shape, or (N, 3, H/4, W/4) for the sr task (irpo_common.tasks.input_scale). Metadata (safetensors' string map), each value JSON: `tasks` (list of N task names or
null), `weights` (one mapping for all items, or a list of N mappings or null), `judge` (list of N floats
or null); any other key is refused, as an extra JSON field is. PNG would round candidates to 8 bits; this keeps the floats the trainer produced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from irpo_common.json_input import BadJSON, loads

MEDIA_TYPE = "application/vnd.safetensors"
IMAGE_KEYS = ("restored", "reference", "degraded")
META_KEYS = ("tasks", "weights", "judge")
_DTYPES = {"F32", "F16", "BF16"}


class WireError(ValueError):
    """A binary batch is malformed; the message is returned to the client as a 4xx."""


def _as_tensor(name: str, x) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        t = t.float()
    if t.ndim != 4 or t.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (N, 3, H, W), got {tuple(t.shape)}")
    return t.contiguous()


def encode_batch(
    restored,
    reference=None,
    degraded=None,
    tasks: Sequence[str | None] | None = None,
    weights: Mapping[str, float] | Sequence[Mapping[str, float] | None] | None = None,
    judge: Sequence[float | None] | None = None,
) -> bytes:
    """Encode float arrays or tensors (N, 3, H, W) and per-item options as safetensors bytes."""
    tensors = {"restored": _as_tensor("restored", restored)}
    for name, x in (("reference", reference), ("degraded", degraded)):
        if x is not None:
            t = _as_tensor(name, x)
            # safetensors refuses tensors sharing memory (e.g. the same array passed twice)
            shared = any(t.untyped_storage().data_ptr() == o.untyped_storage().data_ptr() for o in tensors.values())
            tensors[name] = t.clone() if shared else t
    meta = {}
    for key, value in zip(META_KEYS, (tasks, weights, judge)):
        if value is not None:
            meta[key] = json.dumps(value if isinstance(value, Mapping) else list(value))
    return st_save(tensors, metadata=meta or None)


def _header(data: bytes) -> dict:
    if len(data) < 8:
        raise WireError("body is not a safetensors file (shorter than its 8-byte header length)")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise WireError("body is not a safetensors file (header length exceeds the body)")
    try:
        header = loads(data[8 : 8 + n], field="safetensors header")
    except BadJSON as exc:
        raise WireError(f"body is not a safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise WireError("safetensors header is not a JSON object")
    return header


def _check_entry(name: str, info) -> list[int]:
    """The shape of one tensor entry of the header, after checking every field of it."""
    if not isinstance(info, dict):
        raise WireError(f"{name}: header entry is not an object with dtype, shape and data_offsets")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise WireError(f"{name}: dtype {str(dtype)[:20]} is not accepted; send F32, F16 or BF16")
    ints = lambda v, k: isinstance(v, list) and len(v) == k and all(type(x) is int and x >= 0 for x in v)  # noqa: E731
    if not ints(shape, 4) or shape[1] != 3 or min(shape) < 1:
        raise WireError(f"{name}: expected a shape (N, 3, H, W) of positive integers")
    if not ints(offsets, 2):
        raise WireError(f"{name}: data_offsets must be two non-negative integers")
    return shape


def _metadata(header: dict) -> dict[str, str]:
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise WireError("__metadata__ must map names to strings (safetensors' string map)")
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise WireError(f"unknown metadata key(s) {[k[:40] for k in unknown[:5]]}; allowed: {list(META_KEYS)}")
    return meta


def _per_item(meta: dict, key: str, n: int, allow_mapping: bool = False) -> list:
    if key not in meta:
        return [None] * n
    try:
        value = loads(meta[key], field=f"metadata {key}")
    except BadJSON as exc:
        raise WireError(str(exc)) from None
    if allow_mapping and isinstance(value, dict):
        return [value] * n
    if not isinstance(value, list) or len(value) != n:
        raise WireError(f"metadata {key}: expected a JSON list of {n} entries (one per item)")
    return value


def decode_batch(
    data: bytes, *, max_items: int, max_pixels: int, max_request_pixels: int
) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Decode and validate a binary batch: (image tensors as float32, per-item options dicts).
    Every field of the header is checked, and the decoded size budgeted, before any tensor is read."""
    header = _header(data)
    meta = _metadata(header)
    unknown = sorted(set(header) - set(IMAGE_KEYS))
    if unknown:
        raise WireError(f"unknown tensor(s) {[k[:40] for k in unknown[:5]]}; allowed: {list(IMAGE_KEYS)}")
    if "restored" not in header:
        raise WireError("tensor 'restored' is required")
    shapes = {name: _check_entry(name, info) for name, info in header.items()}
    for name, shape in shapes.items():  # the sr task's degraded input is smaller: make_item checks its size per task
        if shape != shapes["restored"] and (name != "degraded" or shape[0] != shapes["restored"][0]):
            raise WireError(f"{name}: shape {shape} differs from restored {shapes['restored']}"
                            + (" (degraded may differ in height and width only)" if name == "degraded" else ""))
    n, _, h, w = shapes["restored"]
    if not 1 <= n <= max_items:
        raise WireError(f"batch of {n} items; allowed 1..{max_items}")
    if h * w > max_pixels:
        raise WireError(f"restored: {w}x{h} = {h * w} pixels exceeds the limit of {max_pixels}")
    total = sum(s[0] * s[2] * s[3] for s in shapes.values())
    if total > max_request_pixels:
        raise WireError(f"{len(shapes)} tensor(s) of {n} images of up to {w}x{h} = {total} pixels exceed the request budget of {max_request_pixels}")
    try:
        tensors = st_load(data)
    except SafetensorError as exc:
        raise WireError(f"body is not a valid safetensors file: {str(exc)[:200]}") from None
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).flatten(1).any(1).nonzero().flatten().tolist()
            raise WireError(f"{name}: NaN or infinite values in item(s) {bad[:20]}")
    options = [
        {"task": t, "weights": wt, "judge": j}
        for t, wt, j in zip(_per_item(meta, "tasks", n), _per_item(meta, "weights", n, True), _per_item(meta, "judge", n))
    ]
    return {k: v.float() for k, v in tensors.items()}, options
