"""The learner group: learner.num_ranks Learner actors (trainer/actors/learner.py) in one placement group,
data-parallel under torch.distributed. The driver sees one learner: rank 0 exports weights and state,
every rank loads a checkpoint, and a rank that dies takes the whole group down (LearnerLost), for the
run to restart it from its latest checkpoint.
"""

from __future__ import annotations

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, ObjectLostError, RayActorError

from trainer.actors.learner import Learner, merge_stats
from trainer.actors.placement import Placement, bundle
from trainer.config import TrainConfig

_ACTOR_LOST = (RayActorError, ActorDiedError, ActorUnavailableError)


class LearnerLost(RuntimeError):
    """A learner rank died (its process, its node); the group is gone and its state with it."""


class LearnerGroup:
    """Starts the ranks (a clear PlacementError when the cluster cannot place them within learner.ready_timeout_s)."""

    def __init__(self, cfg: TrainConfig, total_steps: int):
        lc = cfg.learner
        self.num_ranks = lc.num_ranks
        what = "the learner group (learner.num_ranks x learner.cpus_per_rank / learner.gpus_per_rank)"
        self.placement = Placement(bundle(lc.cpus_per_rank, lc.gpus_per_rank), lc.num_ranks, "PACK", lc.ready_timeout_s, what)
        actor = ray.remote(Learner)
        self.ranks = [
            actor.options(num_cpus=lc.cpus_per_rank, num_gpus=lc.gpus_per_rank, max_restarts=0,
                          scheduling_strategy=self.placement.strategy(rank)
                          ).remote(cfg, total_steps, rank, lc.num_ranks)
            for rank in range(lc.num_ranks)
        ]
        if lc.num_ranks > 1:
            address, port = self._get([self.ranks[0].rendezvous.remote()])[0]
            self._get([r.join.remote(address, port) for r in self.ranks])

    def _get(self, refs: list[ray.ObjectRef]) -> list:
        """ray.get of every rank's answer, failing as soon as one fails (the others may wait in an all-reduce
        for it forever): the group is then stopped, and a dead rank raises LearnerLost."""
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                ray.get(ready)
            return ray.get(refs)
        except _ACTOR_LOST as exc:
            self.shutdown()
            raise LearnerLost(f"a learner rank died: {str(exc).splitlines()[0]}") from None
        except ObjectLostError as exc:  # the step's rollouts went with a node before the ranks read them
            if self.num_ranks == 1:  # no other rank waits in an all-reduce: the caller may sample them again
                raise
            self.shutdown()
            raise LearnerLost(f"a learner rank lost its inputs: {str(exc).splitlines()[0]}") from None
        except BaseException:
            self.shutdown()
            raise

    def shutdown(self) -> None:
        """Stop the ranks and free their resources (once; later calls do nothing)."""
        if self.ranks:
            for r in self.ranks:
                ray.kill(r, no_restart=True)
            self.placement.release()
            self.ranks = []

    def describe(self) -> dict:
        return {**self._get([self.ranks[0].describe.remote()])[0], "ranks": self.num_ranks}

    def action_sensitivity(self, degraded):
        return self._get([self.ranks[0].action_sensitivity.remote(degraded)])[0]

    def deterministic(self, degraded):
        """Rank 0's deterministic outputs (the reward-hacking watch); every rank holds the same weights."""
        return self._get([self.ranks[0].deterministic.remote(degraded)])[0]

    @property
    def exporter(self):
        """The rank that exports the weights (rank 0): the source of the collective weight transport."""
        return self.ranks[0]

    def weights(self) -> tuple[int, ray.ObjectRef, ray.ObjectRef]:
        """(version, references to rank 0's weight packets of it: changing and frozen tensors; trainer/actors/weight_sync.py)."""
        version, changing, frozen = self.ranks[0].weights.options(num_returns=3).remote()
        return self._get([version])[0], changing, frozen

    def update(self, *parts: ray.ObjectRef) -> tuple[dict[str, float], ray.ObjectRef]:
        """Every rank updates on the step's rollout parts (its own share of the groups); returns the step's
        stats merged over the ranks and a reference to rank 0's new weights."""
        calls = [r.update.options(num_returns=2).remote(*parts) for r in self.ranks]
        stats = self._get([s for s, _ in calls])
        return merge_stats([(s.pop("learner/share"), s) for s in stats]), calls[0][1]

    def snapshot(self) -> ray.ObjectRef:
        """Rank 0's checkpoint state as of now: it runs before the group's next update (an actor runs its
        calls in order), and the checkpoint writer reads it (read) beside the next steps."""
        return self.ranks[0].state.remote()

    def read(self, ref: ray.ObjectRef):
        """The value of one of the group's references; a dead rank raises LearnerLost."""
        return self._get([ref])[0]

    def load_state(self, state: dict) -> None:
        ref = ray.put(state)
        self._get([r.load_state.remote(ref) for r in self.ranks])
