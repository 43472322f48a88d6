"""A stand-in rollout actor for tests and benchmarks of the rollout group (trainer/actors/rollout_group.py):
the same methods as RolloutWorker, no policy and no services. Each part sleeps `delay_s` and answers
rewards (1, 2) = (the part's index, the actor that ran it), so a caller sees where every part ran."""

from __future__ import annotations

import time

import ray
import torch

from trainer.actors.messages import RolloutStats


class StandInRollout:
    delay_s = 1.0

    def __init__(self, cfg, rank: int):
        self.rank = rank

    def ping(self) -> str:
        return "cpu"

    def check_services(self):
        return "127.0.0.1", []

    def receive(self, version: int, weights: list) -> float:
        return time.time() - ray.get(weights[0]).export_start

    def rollout(self, batch, version: int, frozen: list, weights: list):
        ray.get(weights[0])
        time.sleep(self.delay_s)
        stats = RolloutStats(step=batch.step, version=version, rewards=torch.tensor([[float(batch.part), float(self.rank)]]), terms={})
        return stats, stats
