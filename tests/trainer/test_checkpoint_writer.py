"""The background checkpoint writer: the driver hands a write over and goes on; writes run one at a
time; a failed write stops the run at the next checkpoint or at the end, never silently."""

import threading
from pathlib import Path

import pytest

from trainer.checkpointing import CheckpointWriter


def test_submit_returns_while_the_write_runs_and_close_waits_for_it():
    release = threading.Event()
    order = []

    def write(name):
        def run():
            release.wait(10)
            order.append(name)
            return Path(name)
        return run

    writer = CheckpointWriter()
    writer.submit(write("a"))  # returns at once: the write is blocked on the event
    assert order == []
    release.set()
    writer.submit(write("b"))  # waits for "a" first: one write at a time, in order
    assert writer.close() == Path("b") and order == ["a", "b"]


def test_a_failed_write_raises_at_the_next_submit_and_at_close():
    def broken():
        raise OSError("disk full")

    writer = CheckpointWriter()
    writer.submit(broken)
    with pytest.raises(OSError, match="disk full"):
        writer.submit(lambda: Path("x"))
    writer = CheckpointWriter()
    writer.submit(broken)
    with pytest.raises(OSError, match="disk full"):
        writer.close()
