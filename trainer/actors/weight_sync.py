"""The wire format of weight sync (learner -> rollout actors): one flat byte buffer plus a table.

Ray writes a numpy array out of band (pickle protocol 5) and a reader on the same node maps it from
the object store without a copy, while a torch tensor is pickled through its storage (a copy on each
side). So the learner packs the tensors into one numpy uint8 buffer (each at a 64-byte aligned
offset), and a rollout actor views each tensor in that buffer and copies it straight into its policy.

Each version carries only what training changes: the trainable parameters (requires_grad=True; with
adapters, only the adapters) and the buffers. The frozen parameters travel once, as the `frozen`
packet, to an actor that has none yet (a new or restarted actor).

With the collective transport (trainer/actors/collective.py) the same buffer is broadcast instead; the
receivers get the packet's header (version, table) through Ray and view their received bytes with the
same table, so a broadcast packet loads exactly as a fetched one.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

_ALIGN = 64  # bytes: any dtype's view of the buffer starts on its own element boundary


@dataclass(frozen=True)
class PacketHeader:
    version: int
    table: list[tuple[str, str, tuple[int, ...], int]]
    nbytes: int
    export_start: float

    def packet(self, buffer: torch.Tensor) -> WeightPacket:
        """The packet whose bytes arrived in `buffer` (uint8, nbytes long)."""
        return WeightPacket(self.version, buffer, self.table, self.export_start, 0.0)


@dataclass
class WeightPacket:
    version: int
    # uint8, the tensors' bytes back to back at aligned offsets: a numpy array through the object store, a torch
    # tensor (on the policy's device) when it came by broadcast (trainer/actors/collective.py)
    buffer: np.ndarray | torch.Tensor
    table: list[tuple[str, str, tuple[int, ...], int]]  # (state-dict name, torch dtype name, shape, byte offset)
    export_start: float  # time.time() when the learner began exporting: time/weight_sync runs from here
    export_s: float  # seconds the learner spent packing (learner busy time, not idle)

    @property
    def nbytes(self) -> int:
        return int(self.buffer.numel() if isinstance(self.buffer, torch.Tensor) else self.buffer.nbytes)

    def header(self) -> PacketHeader:
        """Everything but the bytes: what a broadcast's receivers need beforehand."""
        return PacketHeader(self.version, self.table, self.nbytes, self.export_start)

    def flat(self) -> torch.Tensor:
        """The buffer as one uint8 tensor, without a copy."""
        if isinstance(self.buffer, torch.Tensor):
            return self.buffer
        with warnings.catch_warnings():  # the object store's buffer is read-only; the views are only read
            warnings.filterwarnings("ignore", message="The given buffer is not writable")
            return torch.frombuffer(self.buffer, dtype=torch.uint8) if self.buffer.size else torch.empty(0, dtype=torch.uint8)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Views into the buffer (read-only when it maps Ray's object store: copy them, never write)."""
        flat = self.flat()
        out = {}
        for name, dtype_name, shape, offset in self.table:
            dtype = getattr(torch, dtype_name)
            n = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
            out[name] = flat[offset : offset + n].view(dtype).view(shape)
        return out


def pack(named: dict[str, torch.Tensor], version: int, export_start: float | None = None) -> WeightPacket:
    """Copy tensors (any device) into one CPU buffer: a GPU tensor's bytes come over in one copy each."""
    start = time.time() if export_start is None else export_start
    t0 = time.perf_counter()
    table, offset = [], 0
    for name, t in named.items():
        table.append((name, str(t.dtype).removeprefix("torch."), tuple(t.shape), offset))
        offset += -(-t.numel() * t.element_size() // _ALIGN) * _ALIGN
    buffer = np.empty(offset, dtype=np.uint8)
    packet = WeightPacket(version, buffer, table, start, 0.0)
    with torch.no_grad():
        for view, t in zip(packet.tensors().values(), named.values()):
            view.copy_(t.detach())
    packet.export_s = time.perf_counter() - t0
    return packet


def split_state(module: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(changing, frozen) entries of the module's state dict: changing = trainable parameters and
    buffers; frozen = parameters with requires_grad=False."""
    changing, frozen = {}, {}
    for name, t in module.state_dict(keep_vars=True).items():
        is_frozen = isinstance(t, torch.nn.Parameter) and not t.requires_grad
        (frozen if is_frozen else changing)[name] = t.detach()
    return changing, frozen


def export_weights(module: torch.nn.Module, version: int, part: Literal["changing", "frozen"] = "changing") -> WeightPacket:
    """The learner's export of one version (or, once, of the frozen parameters)."""
    start = time.time()
    changing, frozen = split_state(module)
    return pack(changing if part == "changing" else frozen, version, start)


def load_packet(module: torch.nn.Module, packet: WeightPacket) -> None:
    """Copy a packet's tensors into the module's parameters and buffers (names must all exist)."""
    state = module.state_dict()
    tensors = packet.tensors()
    unknown = sorted(set(tensors) - set(state))
    if unknown:
        raise KeyError(f"weight packet v{packet.version} holds tensors the policy does not have: {unknown[:5]}")
    with torch.no_grad():
        for name, t in tensors.items():
            state[name].copy_(t)


def full_state(*packets: WeightPacket) -> dict[str, torch.Tensor]:
    """A whole state dict (owned CPU tensors) from the frozen and a changing packet, for checkpoints."""
    return {k: v.clone() for p in packets for k, v in p.tensors().items()}
