"""Checkpoints and logs on fsspec URLs: fsspec's memory filesystem stands in for an object store (no
atomic rename), so meta.json, written last, is the commit marker; a missing package or a backend that
cannot do what TensorBoard needs stops the run before any work; the driver's batches are built ahead."""

import json
import logging
import re
import sys
import threading
import uuid

import fsspec
import pytest
import yaml
from fsspec.implementations.memory import MemoryFileSystem
from upath.implementations.memory import MemoryPath
from upath.registry import register_implementation as register_path

from tests.trainer.test_checkpoint_io import _learner_state
from trainer.checkpointing import CheckpointError, list_checkpoints, load_checkpoint, resolve_resume, save_checkpoint
from trainer.config import ConfigError, TrainConfig, load_config
from trainer.data.prefetch import Prefetcher
from trainer.metrics_log import MetricsLog, read_metrics
from trainer.preflight import PreflightError, check_storage
from trainer.run import main as run_main

MEM = fsspec.filesystem("memory")


@pytest.fixture
def url():
    """A fresh memory:// folder (the memory filesystem is one store per process), removed afterwards."""
    root = f"/irpo-test-{uuid.uuid4().hex[:8]}"
    yield f"memory://{root}"
    if MEM.exists(root):
        MEM.rm(root, recursive=True)


class _Variant(MemoryFileSystem):
    """The memory store (one per process) under another protocol."""

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.replace(f"{cls.protocol}://", "memory://", 1))


class _Recording(_Variant):
    """Records the order files are written in; fails on a chosen file name."""

    protocol = "recmem"
    written: list[str] = []
    fail_on: str | None = None

    def _open(self, path, mode="rb", **kwargs):
        if "w" in mode or "a" in mode:
            name = path.rsplit("/", 1)[-1]
            if name == self.fail_on:
                raise OSError(f"injected failure writing {name}")
            self.written.append(name)
        return super()._open(path, mode, **kwargs)


class _NoAppend(_Variant):
    protocol = "noappend"

    def _open(self, path, mode="rb", **kwargs):
        if "a" in mode:
            raise NotImplementedError("append is not supported")
        return super()._open(path, mode, **kwargs)


def _register(fs_class):
    fsspec.register_implementation(fs_class.protocol, fs_class, clobber=True)
    register_path(fs_class.protocol, MemoryPath, clobber=True)


@pytest.fixture
def recording(monkeypatch):
    _register(_Recording)
    monkeypatch.setattr(_Recording, "written", [])
    monkeypatch.setattr(_Recording, "fail_on", None)
    return _Recording


def test_an_object_store_checkpoint_writes_meta_json_last_and_in_place(url, recording):
    path = save_checkpoint(url.replace("memory", "recmem"), 2, _learner_state(2), {1: {"w": _learner_state(1)["policy"]["weight"]}}, {"n": 1}, keep=3)
    assert recording.written[-1] == "meta.json" and len(recording.written) == 5
    root = url.removeprefix("memory://")
    assert MEM.exists(f"{root}/step-00000002/meta.json")  # no rename: written where it stays
    assert not [p for p in MEM.ls(root, detail=False) if ".tmp" in p]
    assert load_checkpoint(path).step == 2


def test_a_write_cut_short_on_an_object_store_is_skipped_by_auto(url, recording, caplog):
    rec = url.replace("memory", "recmem")
    save_checkpoint(rec, 2, _learner_state(2), {}, {}, keep=3)
    recording.fail_on = "trainer_state.pt"
    with pytest.raises(OSError, match="injected"):
        save_checkpoint(rec, 4, _learner_state(4), {}, {}, keep=3)
    root = url.removeprefix("memory://")
    assert MEM.exists(f"{root}/step-00000004/policy.safetensors") and not MEM.exists(f"{root}/step-00000004/meta.json")
    with caplog.at_level(logging.WARNING, logger="trainer.checkpointing"):
        assert resolve_resume(rec, "auto").step == 2
    assert "step-00000004 is not a complete checkpoint" in caplog.text
    recording.fail_on = None
    assert save_checkpoint(rec, 4, _learner_state(4), {}, {}, keep=3).name == "step-00000004"  # the rerun overwrites it
    assert resolve_resume(rec, "auto").step == 4


def test_pruning_on_an_object_store_counts_only_complete_checkpoints(url):
    root = url.removeprefix("memory://")
    for step in (2, 4):
        save_checkpoint(url, step, _learner_state(step), {}, {}, keep=2)
    MEM.pipe(f"{root}/step-00000003/policy.safetensors", b"partial")  # a write cut short, older than the kept ones
    MEM.pipe(f"{root}/step-00000005/policy.safetensors", b"partial")  # one newer than a kept one
    save_checkpoint(url, 6, _learner_state(6), {}, {}, keep=2)
    assert [p.name for p in list_checkpoints(url)] == ["step-00000004", "step-00000005", "step-00000006"]
    save_checkpoint(url, 8, _learner_state(8), {}, {}, keep=2)
    assert [p.name for p in list_checkpoints(url)] == ["step-00000006", "step-00000008"]
    assert not MEM.exists(f"{root}/step-00000004")


def test_loading_from_a_url_verifies_the_hashes(url):
    path = save_checkpoint(url, 3, _learner_state(3), {}, {}, keep=1)
    f = f"{path.path}/reference.safetensors"
    data = bytearray(MEM.cat(f))
    data[len(data) // 2] ^= 0xFF
    MEM.pipe(f, bytes(data))
    with pytest.raises(CheckpointError, match="reference.safetensors is damaged"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        resolve_resume(url, "auto")
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        resolve_resume(url, f"{url}/step-00000009")


@pytest.mark.parametrize("where", ["local/run", "memory://bucket/run"])
def test_a_config_with_storage_paths_round_trips_through_json(where):
    """Checkpoints store the run's config as JSON; export and evaluation read it back with model_validate_json."""
    cfg = TrainConfig.model_validate({"checkpoint": {"dir": f"{where}/checkpoints"}, "logging": {"dir": where}})
    back = TrainConfig.model_validate_json(cfg.model_dump_json())
    assert (str(back.checkpoint.dir), str(back.logging.dir)) == (str(cfg.checkpoint.dir), str(cfg.logging.dir))
    assert json.loads(cfg.model_dump_json())["logging"]["dir"] == str(cfg.logging.dir)


def test_a_url_whose_package_is_missing_fails_at_config_load(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"root": str(tmp_path)}}))
    monkeypatch.setitem(sys.modules["fsspec.registry"].known_implementations, "fakecloud",
                        {"class": "irpo_no_such_package.FakeFileSystem", "err": "Install irpo-no-such-package to access fakecloud"})
    with pytest.raises(ConfigError, match="(?s)checkpoint.dir.*Install irpo-no-such-package.*irpo\\[cloud\\]"):
        load_config(cfg, ["checkpoint.dir=fakecloud://bucket/ckpt"])
    with pytest.raises(ConfigError, match="Unsupported filesystem: 'nosuchfs'"):
        load_config(cfg, ["logging.dir=nosuchfs://bucket/run"])
    with pytest.raises(CheckpointError, match="--resume fakecloud://b/step-00000002: Install irpo-no-such-package"):
        resolve_resume(tmp_path, "fakecloud://b/step-00000002")
    try:
        import s3fs  # noqa: F401
    except ImportError:  # the default install: s3:// names the package to install
        with pytest.raises(ConfigError, match="Install s3fs"):
            load_config(cfg, ["checkpoint.dir=s3://bucket/ckpt"])
    loaded = load_config(cfg, ["checkpoint.dir=memory://bucket/ckpt"])
    assert json.loads(loaded.model_dump_json())["checkpoint"]["dir"] == "memory://bucket/ckpt"
    assert TrainConfig.model_validate(json.loads(loaded.model_dump_json())).checkpoint.dir == loaded.checkpoint.dir


def test_metrics_on_a_url_survive_a_resume_and_tensorboard_writes_there(url):
    log = MetricsLog(url, 0, tensorboard=True, flush_seconds=3600)
    for step in range(4):
        log.log(step, {"reward/mean": float(step)})
    assert read_metrics(f"{url}/metrics.jsonl") == []  # rewritten at most every flush_seconds on a URL ...
    log.close()  # ... and at close
    assert [r["step"] for r in read_metrics(f"{url}/metrics.jsonl")] == [0, 1, 2, 3]
    root = url.removeprefix("memory://")
    assert any("tfevents" in p for p in MEM.find(f"{root}/tensorboard"))
    resumed = MetricsLog(url, 2, tensorboard=False, flush_seconds=0)  # rows at and after the resume step are computed again
    assert [r["step"] for r in read_metrics(f"{url}/metrics.jsonl")] == [0, 1]
    resumed.log(2, {"reward/mean": 2.5})
    assert [r["reward/mean"] for r in read_metrics(f"{url}/metrics.jsonl")] == [0.0, 1.0, 2.5]
    resumed.close()


def test_storage_is_checked_before_any_work(tmp_path, url):
    _register(_NoAppend)
    cfg = TrainConfig.model_validate({"checkpoint": {"dir": f"{url}/ckpt"}, "logging": {"dir": url.replace("memory", "noappend")}})
    with pytest.raises(PreflightError, match="logging.dir noappend://.*cannot append.*logging.tensorboard=false"):
        check_storage(cfg)
    check_storage(cfg.model_copy(update={"logging": cfg.logging.model_copy(update={"tensorboard": False})}))
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(PreflightError, match="checkpoint.dir .*cannot write"):
        check_storage(TrainConfig.model_validate({"checkpoint": {"dir": str(blocked / "ckpt")}, "logging": {"dir": url}}))


def test_the_next_steps_batches_are_built_ahead_on_one_thread():
    built, threads, started = [], set(), threading.Event()

    def build(step):
        threads.add(threading.get_ident())
        built.append(step)
        started.set()
        return f"batches-{step}"

    batches = Prefetcher(build, end=3)
    assert batches.get(0) == "batches-0"
    batches._pool.submit(lambda: None).result()  # the worker has run everything queued before
    assert built == [0, 1]  # step 1 built while the driver works on step 0
    assert batches.get(1) == "batches-1" and batches.get(2) == "batches-2"
    assert batches.get(0) == "batches-0"  # a restart from an earlier step gets its batches built again
    batches.close()
    assert built[:3] == [0, 1, 2] and threading.get_ident() not in threads and len(threads) == 1


class _Denied(_Variant):
    """A bucket the credentials cannot reach: every call is refused."""

    protocol = "denied"

    def _open(self, path, mode="rb", **kwargs):
        raise PermissionError("access denied")

    def ls(self, path, detail=True, **kwargs):
        raise PermissionError("access denied")

    def info(self, path, **kwargs):
        raise PermissionError("access denied")


def test_a_bucket_that_refuses_stops_the_cli_with_a_message(tmp_path, capsys):
    _register(_Denied)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"root": str(tmp_path)}, "checkpoint": {"dir": "denied://bucket/ckpt"}, "logging": {"dir": str(tmp_path / "run")}}))
    assert run_main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"checkpoint.dir denied:///?bucket/ckpt: cannot write a file there \(PermissionError: access denied\)", err)
    assert "Traceback" not in err
