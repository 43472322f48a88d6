"""A locally started Ray (no cluster address) listens on loopback only."""

import json
import shutil
import subprocess
import sys
import tempfile

from tests.trainer.run_fixtures import REPO

SCRIPT = """
import json, psutil, ray
from trainer.config import TrainConfig
from trainer.run import init_ray
cfg = TrainConfig.model_validate({"ray": {"num_cpus": 1, "object_store_mb": 100, "temp_dir": TEMP}})
assert init_ray(cfg)
try:
    pids = {p.pid for p in psutil.Process().children(recursive=True)} | {psutil.Process().pid}
    bound = sorted({c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.pid in pids})
finally:
    ray.shutdown()
print(json.dumps(bound))
"""


def test_local_ray_binds_loopback_only(tmp_path):
    temp = tempfile.mkdtemp(prefix="ray-lo-", dir="/tmp")  # short: Ray's socket paths have a length limit
    try:
        out = subprocess.run([sys.executable, "-c", SCRIPT.replace("TEMP", repr(temp))], cwd=REPO, capture_output=True, text=True, timeout=180,
                             env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"})
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-2000:]
    bound = json.loads(out.stdout.strip().splitlines()[-1])
    assert bound and all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for ip in bound), bound
