"""Weight sync end to end: from the learner's export start until the last rollout actor has the
version loaded in its policy, for the paper-size AdaIR (all trainable) and a LoRA-sized state
(AdaIR frozen plus rank-16 adapters of every conv and linear layer), on one node and across two
simulated nodes (devtools/ray_nodes.py, loopback).

Three formats: 'flat' = trainer/actors/weight_sync.py (the changing tensors in one numpy buffer, read
as a view of the object store), 'pickled' = the earlier way (the whole state dict of torch tensors
through the object store), and 'collective' = the same flat buffer broadcast from the learner to the
actors over their own process group (trainer/actors/collective.py, the driver's Broadcaster; gloo on
a CPU, NCCL when every member is on CUDA), only the header going through Ray.

  .venv/bin/python -m benchmarks.bench_weight_sync [--repeats 3] [--actors 2] [--nodes 1 2] [--formats flat pickled collective]
prints one JSON line per (state, nodes, format) with the median seconds and the bytes sent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter

import ray
import torch

from devtools.ray_nodes import add_node, loopback_cluster
from trainer.actors.collective import Broadcaster, WeightLink
from trainer.actors.weight_sync import PacketHeader, export_weights, load_packet
from trainer.config import ModelConfig, WeightSyncConfig
from trainer.model import RestorationPolicy

LORA_RANK = 16


def build(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    policy = RestorationPolicy(ModelConfig())  # the paper preset's AdaIR (dim 48, blocks 4/6/6/8)
    if kind == "full":
        return policy
    policy.requires_grad_(False)
    adapters = torch.nn.ParameterDict()
    for name, m in policy.named_modules():  # the sizes LoRA adapters of rank r would have: r x (in + out)
        if isinstance(m, torch.nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            fan_in = m.in_features
        else:
            continue
        out = m.out_channels if isinstance(m, torch.nn.Conv2d) else m.out_features
        adapters[name.replace(".", "_")] = torch.nn.Parameter(torch.zeros(LORA_RANK * (fan_in + out)))
    policy.lora = adapters
    return policy


class Learner(WeightLink):
    """The trainer's Learner as far as weight sync goes (the same link methods: trainer/actors/learner.py)."""

    def __init__(self, kind: str):
        torch.set_num_threads(1)
        self.module = build(kind)
        self.device = torch.device("cpu")
        self.outbox = None

    def flat(self, version: int):
        return export_weights(self.module, version)

    def export(self, version: int) -> None:
        self.outbox = export_weights(self.module, version)

    def link_header(self, version: int) -> PacketHeader:
        return self.outbox.header()

    def link_send(self, gen: int) -> None:
        self._link_broadcast(gen, self.outbox.flat())

    def pickled(self, version: int):
        start = time.time()
        return {"start": start, "state": {k: v.detach().clone() for k, v in self.module.state_dict().items()}}


class Rollout(WeightLink):
    def __init__(self, kind: str):
        torch.set_num_threads(1)
        self.module = build(kind)
        self.device = torch.device("cpu")

    def link_receive(self, gen: int, header: PacketHeader) -> float:
        """Receive into a spare buffer and load it into the policy (the trainer stages it, then loads it)."""
        packet = header.packet(self._link_broadcast(gen, self._link_spare(header.nbytes)))
        load_packet(self.module, packet)
        self._link_recycle(packet, keep=1)
        return time.time() - header.export_start

    def flat(self, refs) -> float:
        packet = ray.get(refs[0])
        load_packet(self.module, packet)
        return time.time() - packet.export_start

    def pickled(self, refs) -> float:
        msg = ray.get(refs[0])
        self.module.load_state_dict(msg["state"])
        return time.time() - msg["start"]


def measure_collective(learner, actors, repeats: int) -> tuple[float, int, float]:
    """(median seconds per version, bytes broadcast, seconds to form the group) through the driver's Broadcaster."""
    link = Broadcaster(WeightSyncConfig(transport="collective", timeout_s=120.0), Counter())
    live = dict(enumerate(actors))
    key = tuple((i, 0) for i in live)
    seconds, form_s = [], 0.0
    for v in range(repeats + 2):  # version 0 only shows the membership once (the group forms at 1); 1 warms up
        ray.get(learner.export.remote(v))
        t0 = time.perf_counter()
        receipts = link.start(v, learner, live, key, ["cpu"] * len(actors))
        if receipts is None:
            continue
        form_s = form_s or time.perf_counter() - t0
        round_, missed = link.settle()
        if missed:
            raise RuntimeError(f"the broadcast of version {v} failed: {link.faults}")
        if v > 1:
            seconds.append(max(ray.get(list(round_.receipts.values()))))
    nbytes = ray.get(learner.link_header.remote(0)).nbytes
    link.reset()
    return statistics.median(seconds), nbytes, form_s


def measure(learner, actors, fmt: str, repeats: int) -> tuple[float, int]:
    seconds = []
    for v in range(repeats + 1):  # the first round warms up (imports, first touches of memory)
        ref = getattr(learner, fmt).remote(v)
        ends = ray.get([getattr(a, fmt).remote([ref]) for a in actors])
        if v:
            seconds.append(max(ends))
    nbytes = ray.get(ref).nbytes if fmt == "flat" else sum(t.numel() * t.element_size() for t in ray.get(ref)["state"].values())
    return statistics.median(seconds), nbytes


def run(nodes: int, repeats: int, n_actors: int, formats: list[str]) -> None:
    with loopback_cluster(head_cpus=1 + (n_actors if nodes == 1 else 0), object_store_mb=1024) as cluster:
        if nodes == 2:
            add_node(cluster, "node_b", cpus=n_actors, object_store_mb=1024)
        rollout_node = "node_b" if nodes == 2 else "node_a"
        for kind in ("full", "lora"):
            learner = ray.remote(Learner).options(num_cpus=1, resources={"node_a": 0.01}).remote(kind)
            actors = [ray.remote(Rollout).options(num_cpus=1, resources={rollout_node: 0.01}).remote(kind) for _ in range(n_actors)]
            for fmt in formats:
                extra = {}
                if fmt == "collective":
                    median, nbytes, form_s = measure_collective(learner, actors, repeats)
                    extra = {"backend": "gloo", "form_s": round(form_s, 3)}
                else:
                    median, nbytes = measure(learner, actors, fmt, repeats)
                print(json.dumps({"state": kind, "nodes": nodes, "format": fmt, "actors": n_actors, "sync_s": round(median, 4), "mb_sent": round(nbytes / 1e6, 2), **extra}), flush=True)
            for a in [learner, *actors]:
                ray.kill(a)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--nodes", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    p.add_argument("--formats", nargs="+", default=["flat", "pickled", "collective"], choices=["flat", "pickled", "collective"])
    args = p.parse_args()
    for nodes in args.nodes:
        run(nodes, args.repeats, args.actors, args.formats)


if __name__ == "__main__":
    main()
