"""A run across two Ray nodes on loopback (devtools/ray_nodes.py): the learner on the head, the
rollout actors on a second node (rollout.resources); that node is killed mid-run and a new one
added. The run ends at the same weights as an undisturbed run on the same cluster."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from devtools.ray_nodes import add_node, loopback_cluster
from tests.trainer.run_fixtures import REWARD_ARGS, tiny_config, write_photos
from trainer.local_service import LocalRewardService
from trainer.metrics_log import read_metrics
from trainer.run import train

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]
STEPS = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-nodes")
    with LocalRewardService(REWARD_ARGS, log_path=root / "reward.log").start(300) as reward:
        with loopback_cluster(head_cpus=1) as cluster:  # the head's one CPU: the learner
            yield root, write_photos(root / "photos"), reward.url, cluster


def _cfg(root, photos, url, name):
    return tiny_config(root / name, photos, url, optim={"max_steps": STEPS},
                       rollout={"num_workers": 1, "resources": {"rollout_node": 1}, "placement_timeout_s": 300, "restart_timeout_s": 300})


def test_losing_the_rollout_node_and_adding_another_ends_at_the_same_weights(setup):
    root, photos, url, cluster = setup
    node = add_node(cluster, "rollout_node")
    quiet = _cfg(root, photos, url, "quiet")
    train(quiet)

    def lose_node(trainer, step, metrics):
        if step == 1:  # step 2's rollout is in flight (or done) on the node that goes
            cluster.remove_node(node, allow_graceful=False)
            add_node(cluster, "rollout_node")

    moved = _cfg(root, photos, url, "moved")
    train(moved, on_step=lose_node)
    rows = read_metrics(moved.logging.dir / "metrics.jsonl")
    assert rows[-1]["faults/rollout_actor_lost"] + rows[-1]["faults/rollout_outputs_lost"] >= 1
    final = f"step-{STEPS:08d}/policy.safetensors"
    a = load_file(str(quiet.checkpoint.dir / final))
    b = load_file(str(moved.checkpoint.dir / final))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
