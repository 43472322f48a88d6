"""Damaged checkpoints are found before any work: a named fallback with --resume auto, else a clear stop."""

import json
import logging

import pytest

from tests.trainer.test_checkpoint_io import _learner_state
from trainer.checkpointing import CheckpointError, load_checkpoint, resolve_resume, save_checkpoint


def _meta(path):
    return json.loads((path / "meta.json").read_text())


def _truncate(f):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _flip_byte(f):
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the hash can tell
    f.write_bytes(bytes(data))


def _legacy(path, damage):
    """A checkpoint from before meta.json listed its files, then damaged: the loaders must still say so."""
    meta = _meta(path)
    del meta["files"]
    (path / "meta.json").write_text(json.dumps(meta))
    damage(path)


CORRUPTIONS = {
    "emptied folder": lambda p: [f.unlink() for f in p.iterdir()],
    "no meta.json": lambda p: (p / "meta.json").unlink(),
    "meta.json not JSON": lambda p: (p / "meta.json").write_text("{step: 4"),
    "meta.json not UTF-8": lambda p: (p / "meta.json").write_bytes(b"\xff\xfe\x00{"),
    "meta.json a list": lambda p: (p / "meta.json").write_text("[4]"),
    "meta.json step a string": lambda p: (p / "meta.json").write_text(json.dumps({**_meta(p), "step": "4"})),
    "meta.json step of another folder": lambda p: (p / "meta.json").write_text(json.dumps({**_meta(p), "step": 3})),
    "rollout version not an int": lambda p: (p / "meta.json").write_text(json.dumps({**_meta(p), "rollout_versions": ["x"]})),
    "policy truncated": lambda p: _truncate(p / "policy.safetensors"),
    "policy bytes flipped": lambda p: _flip_byte(p / "policy.safetensors"),
    "policy deleted": lambda p: (p / "policy.safetensors").unlink(),
    "reference deleted": lambda p: (p / "reference.safetensors").unlink(),
    "rollout weights deleted": lambda p: (p / "rollout-v00000003.safetensors").unlink(),
    "trainer state garbage": lambda p: (p / "trainer_state.pt").write_bytes(b"garbage"),
    "trainer state a folder": lambda p: ((p / "trainer_state.pt").unlink(), (p / "trainer_state.pt").mkdir()),
    "legacy, trainer state garbage": lambda p: _legacy(p, lambda q: (q / "trainer_state.pt").write_bytes(b"garbage")),
    "legacy, safetensors header not a dict": lambda p: _legacy(p, lambda q: (q / "policy.safetensors").write_bytes((2).to_bytes(8, "little") + b"[]")),
    "legacy, policy truncated": lambda p: _legacy(p, lambda q: _truncate(q / "policy.safetensors")),
}


@pytest.fixture
def two_checkpoints(tmp_path):
    save_checkpoint(tmp_path, 2, _learner_state(2), {}, {"num_images": 5}, keep=5)
    newest = save_checkpoint(tmp_path, 4, _learner_state(4), {3: {"w": _learner_state(3)["policy"]["weight"]}}, {"num_images": 5}, keep=5)
    return tmp_path, newest


@pytest.mark.parametrize("damage", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_auto_falls_back_to_the_newest_intact_and_names_the_broken(two_checkpoints, damage, caplog):
    root, newest = two_checkpoints
    CORRUPTIONS[damage](newest)
    with pytest.raises(CheckpointError, match="step-00000004"):
        load_checkpoint(newest)
    with caplog.at_level(logging.WARNING):
        ckpt = resolve_resume(root, "auto")
    assert ckpt.step == 2 and ckpt.path.name == "step-00000002"
    assert "step-00000004" in caplog.text and "newest intact" in caplog.text
    with pytest.raises(CheckpointError):
        resolve_resume(root, str(newest))


def test_only_broken_checkpoints_stop_instead_of_a_silent_fresh_start(tmp_path):
    (tmp_path / "step-00000007").mkdir()  # an empty checkpoint folder
    path = save_checkpoint(tmp_path, 9, _learner_state(9), {}, {}, keep=5)
    _flip_byte(path / "reference.safetensors")
    with pytest.raises(CheckpointError, match="no intact checkpoint") as err:
        resolve_resume(tmp_path, "auto")
    assert "step-00000007" in str(err.value) and "reference.safetensors is damaged" in str(err.value)
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        resolve_resume(tmp_path, "never")
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        resolve_resume(tmp_path, str(tmp_path / "step-00000099"))
