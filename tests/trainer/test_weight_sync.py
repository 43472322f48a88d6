"""The weight-sync wire format: exact round trips, only the changing tensors per version, and Ray
hands the packet's buffer over without a copy (a read-only view of the object store)."""

import numpy as np
import pytest
import torch

from trainer.actors.weight_sync import export_weights, full_state, load_packet, pack


class Adapted(torch.nn.Module):
    """A frozen base with a trainable adapter and a buffer (the shape of a LoRA policy)."""

    def __init__(self):
        super().__init__()
        self.base = torch.nn.Linear(8, 8).requires_grad_(False)
        self.adapter = torch.nn.Linear(8, 2, bias=False)
        self.register_buffer("count", torch.tensor(3, dtype=torch.int64))
        self.scale = torch.nn.Parameter(torch.randn(5, 3).to(torch.bfloat16))


def test_pack_round_trips_mixed_dtypes_exactly():
    named = {"a": torch.randn(3, 4), "b": torch.randn(7).to(torch.bfloat16), "c": torch.tensor(5), "d": torch.zeros(0), "e": torch.randn(2, 2, dtype=torch.float64)}
    packet = pack(named, version=4)
    assert packet.buffer.dtype == np.uint8 and packet.version == 4
    out = packet.tensors()
    for k, v in named.items():
        assert out[k].dtype == v.dtype and torch.equal(out[k], v), k


def test_a_version_carries_only_the_trainable_parameters_and_buffers():
    torch.manual_seed(0)
    src = Adapted()
    changing = export_weights(src, 1)
    frozen = export_weights(src, 1, "frozen")
    assert sorted(changing.tensors()) == ["adapter.weight", "count", "scale"]
    assert sorted(frozen.tensors()) == ["base.bias", "base.weight"]
    assert changing.nbytes < frozen.nbytes
    dst = Adapted()
    load_packet(dst, frozen)
    load_packet(dst, changing)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    assert sorted(full_state(frozen, changing)) == sorted(src.state_dict())


def test_a_packet_with_unknown_names_is_refused():
    with pytest.raises(KeyError, match="does not have"):
        load_packet(Adapted(), pack({"nope": torch.zeros(1)}, 0))
