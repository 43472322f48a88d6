"""The rollout group on a local Ray (stand-in actors from devtools/standin_rollout.py, no services):
an impossible request stops with a message naming what is missing, a dead actor's parts move to a
healthy actor at once, the group grows back when Ray restarts the actor, and a weight packet crosses
the object store as a read-only view (no copy)."""

import os
import tempfile
import time

import numpy as np
import pytest
import ray
import torch

from devtools.standin_rollout import StandInRollout
from tests.trainer.run_fixtures import tiny_config
from trainer.actors.messages import ImageBatch
from trainer.actors.placement import PlacementError
from trainer.actors.rollout_group import RolloutGroup
from trainer.actors.weight_sync import pack

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on loopback
    temp = tempfile.mkdtemp(prefix="ray-grp-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, _temp_dir=temp)
    yield
    ray.shutdown()


def _cfg(tmp_path, **rollout):
    return tiny_config(tmp_path, tmp_path, "http://127.0.0.1:9", rollout={"num_workers": 2, "max_staleness": 0, "cpus_per_worker": 0.5, **rollout})


def _batches(step, n=2):
    return [ImageBatch(step=step, part=p, ids=[f"i{p}"], tasks=["denoise"], degraded=torch.zeros(1, 3, 4, 4), target=torch.zeros(1, 3, 4, 4)) for p in range(n)]


def _group(cfg):
    group = RolloutGroup(cfg, worker_cls=StandInRollout)
    group.frozen = ray.put(pack({}, 0))
    group.publish(0, ray.put(pack({"w": torch.ones(3)}, 0)))
    return group


def test_an_impossible_request_stops_naming_the_missing_resource(local_ray, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(PlacementError, match=r"rollout\.gpus_per_worker.*could not be placed within 2 s: GPU: 1 per actor, but the largest node offers 0"):
        RolloutGroup(_cfg(tmp_path, gpus_per_worker=1, placement_timeout_s=2), worker_cls=StandInRollout)
    print(f"infeasible request refused after {time.monotonic() - t0:.1f} s (placement_timeout_s=2)")
    # nothing is left holding resources: a feasible group places right after
    _group(_cfg(tmp_path)).close()


def test_a_dead_actors_parts_move_and_the_group_grows_back(local_ray, tmp_path):
    group = _group(_cfg(tmp_path))
    stats, _ = group.gather(_submit(group, 0))
    assert stats.rewards.tolist() == [[0.0, 0.0], [1.0, 1.0]]  # healthy: each actor runs its own part
    assert group.sync_seconds(0) is not None
    group.submit(_batches(1), 0)
    time.sleep(0.3)  # both parts running
    ray.kill(group.actors[1], no_restart=False)
    killed_at = time.monotonic()
    stats, _ = group.gather(1)
    assert stats.rewards[:, 0].tolist() == [0.0, 1.0]  # in part order, whoever ran them
    assert stats.rewards[1, 1].item() == 0.0  # part 1 ran on actor 0
    assert group.faults["rollout_actor_lost"] == 1
    [move] = group.moves
    assert (move.step, move.part, move.from_actor, move.to_actor) == (1, 1, 1, 0)
    print(f"dead actor's part running elsewhere {move.sent_at - killed_at:.3f} s after the kill ({move.seconds:.3f} s after the loss was seen)")
    deadline = time.monotonic() + 120
    step = 2
    while not all(group.alive):  # Ray restarts actor 1; the group takes it back
        assert time.monotonic() < deadline, "the restarted actor never rejoined"
        group.gather(_submit(group, step))
        step += 1
    stats, _ = group.gather(_submit(group, step))
    assert stats.rewards.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    group.close()


def _submit(group, step):
    group.submit(_batches(step), 0)
    return step


@ray.remote
def _view(packets):
    buffer = ray.get(packets[0]).buffer
    return bool(buffer.flags.writeable), float(torch.frombuffer(bytearray(buffer[:4]), dtype=torch.float32)[0])


def test_a_packet_reaches_another_process_as_a_view_of_the_object_store(local_ray):
    ref = ray.put(pack({"w": torch.full((1000,), 2.5)}, 1))
    writeable, first = ray.get(_view.remote([ref]))
    assert not writeable and first == 2.5  # a read-only mapping of the store, not an unpickled copy
    assert isinstance(ray.get(ref).buffer, np.ndarray)
