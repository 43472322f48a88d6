"""Weight sync end to end: from the learner's export start until the last rollout actor has the
version loaded in its policy, for the paper-size AdaIR (all trainable) and a LoRA-sized state
(AdaIR frozen plus rank-16 adapters of every conv and linear layer), on one node and across two
simulated nodes (devtools/ray_nodes.py, loopback).

Two formats: 'flat' = trainer/actors/weight_sync.py (the changing tensors in one numpy buffer, read
as a view of the object store), and 'pickled' = the earlier way (the whole state dict of torch
tensors through the object store).

  .venv/bin/python -m benchmarks.bench_weight_sync [--repeats 3] [--actors 2]
prints one JSON line per (state, nodes, format) with the median seconds and the bytes sent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import ray
import torch

from devtools.ray_nodes import add_node, loopback_cluster
from trainer.actors.weight_sync import export_weights, load_packet
from trainer.config import ModelConfig
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


class Learner:
    def __init__(self, kind: str):
        torch.set_num_threads(1)
        self.module = build(kind)

    def flat(self, version: int):
        return export_weights(self.module, version)

    def pickled(self, version: int):
        start = time.time()
        return {"start": start, "state": {k: v.detach().clone() for k, v in self.module.state_dict().items()}}


class Rollout:
    def __init__(self, kind: str):
        torch.set_num_threads(1)
        self.module = build(kind)

    def flat(self, refs) -> float:
        packet = ray.get(refs[0])
        load_packet(self.module, packet)
        return time.time() - packet.export_start

    def pickled(self, refs) -> float:
        msg = ray.get(refs[0])
        self.module.load_state_dict(msg["state"])
        return time.time() - msg["start"]


def measure(learner, actors, fmt: str, repeats: int) -> tuple[float, int]:
    seconds = []
    for v in range(repeats + 1):  # the first round warms up (imports, first touches of memory)
        ref = getattr(learner, fmt).remote(v)
        ends = ray.get([getattr(a, fmt).remote([ref]) for a in actors])
        if v:
            seconds.append(max(ends))
    nbytes = ray.get(ref).nbytes if fmt == "flat" else sum(t.numel() * t.element_size() for t in ray.get(ref)["state"].values())
    return statistics.median(seconds), nbytes


def run(nodes: int, repeats: int, n_actors: int) -> None:
    with loopback_cluster(head_cpus=1 + (n_actors if nodes == 1 else 0), object_store_mb=1024) as cluster:
        if nodes == 2:
            add_node(cluster, "node_b", cpus=n_actors, object_store_mb=1024)
        rollout_node = "node_b" if nodes == 2 else "node_a"
        for kind in ("full", "lora"):
            learner = ray.remote(Learner).options(num_cpus=1, resources={"node_a": 0.01}).remote(kind)
            actors = [ray.remote(Rollout).options(num_cpus=1, resources={rollout_node: 0.01}).remote(kind) for _ in range(n_actors)]
            for fmt in ("flat", "pickled"):
                median, nbytes = measure(learner, actors, fmt, repeats)
                print(json.dumps({"state": kind, "nodes": nodes, "format": fmt, "actors": n_actors, "sync_s": round(median, 4), "mb_sent": round(nbytes / 1e6, 2)}), flush=True)
            for a in [learner, *actors]:
                ray.kill(a)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--actors", type=int, default=2)
    args = p.parse_args()
    for nodes in (1, 2):
        run(nodes, args.repeats, args.actors)


if __name__ == "__main__":
    main()
