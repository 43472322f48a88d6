"""Several Ray nodes on one machine, on loopback, for multi-node tests and benchmarks.

Ray's own multi-node test utility (`ray.cluster_utils.Cluster`) starts each node through Ray's Node
API; `ray start --address` refuses to join a loopback head. Each node gets a custom resource
named after it ({"node_a": 1}) so a test can pin actors to a node, and its own temp dir.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager

import ray
from ray._private import ray_constants
from ray.cluster_utils import Cluster


@contextmanager
def loopback_cluster(head_cpus: int = 1, object_store_mb: int = 200):
    """A head node ('node_a' resource) the caller is connected to; add more with add_node()."""
    ray_constants.ENABLE_RAY_CLUSTER = False  # keep Ray on 127.0.0.1 (the env variable is read at import: too late here)
    temp = tempfile.mkdtemp(prefix="ray-nodes-", dir="/tmp")  # short: Ray's socket paths have a length limit
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": head_cpus, "resources": {"node_a": 1}, "object_store_memory": object_store_mb * 1024 * 1024,
        "temp_dir": temp, "include_dashboard": False, "node_ip_address": "127.0.0.1"})
    ray.init(address=cluster.address, include_dashboard=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def add_node(cluster: Cluster, name: str, cpus: int = 1, object_store_mb: int = 200):
    node = cluster.add_node(num_cpus=cpus, resources={name: 1}, object_store_memory=object_store_mb * 1024 * 1024, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    return node
