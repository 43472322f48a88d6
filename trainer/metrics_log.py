"""Per-step metrics to metrics.jsonl, TensorBoard and (optionally) Weights & Biases; a resumed run drops
records past its checkpoint and continues the same W&B run (its id travels in the checkpoint).

The run folder is a local path or an fsspec URL (trainer/storage.py). A local metrics.jsonl gets each
row appended at once; object stores cannot append, so there the whole file is rewritten every
logging.flush_seconds and at close. TensorBoard writes URLs itself (its fsspec layer, which appends)."""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass

from torch.utils.tensorboard import SummaryWriter

from trainer.config import ConfigError
from trainer.storage import is_local, storage_path


def read_metrics(path) -> list[dict]:
    path = storage_path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class WandbRun:
    """Which W&B run to write to: a fresh run gets a new id, a resumed one the id its checkpoint holds."""

    project: str
    mode: str  # "online" or "offline"
    run_id: str
    name: str
    config: dict


def new_wandb_id() -> str:
    """A fresh W&B run id (8 hex digits, within W&B's allowed characters), once wandb is known to import."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError("logging.wandb is true but wandb is not installed: pip install '.[wandb]' (or set logging.wandb=false)") from None
    return uuid.uuid4().hex[:8]


class MetricsLog:
    def __init__(self, run_dir, start_step: int, tensorboard: bool, wandb_run: WandbRun | None = None, flush_seconds: float = 30.0):
        run_dir = storage_path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "metrics.jsonl"
        # steps at or after the resume point were computed by the killed run and are computed again
        self._lines = [json.dumps(r) + "\n" for r in read_metrics(self.path) if r["step"] < start_step]
        self._flush_seconds = flush_seconds
        self._flush()
        self._file = self.path.open("a") if is_local(run_dir) else None  # a local file appends
        self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step) if tensorboard else None
        self._wandb = None
        if wandb_run is not None:
            import wandb

            # resume="allow": the same id continues the run. W&B drops steps below its last logged one; those
            # are the steps a killed run logged past its checkpoint, which an exact resume recomputes identically.
            self._wandb = wandb.init(
                project=wandb_run.project, id=wandb_run.run_id, name=wandb_run.name, config=wandb_run.config,
                dir=str(run_dir) if is_local(run_dir) else None, mode=wandb_run.mode, resume="allow",
            )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": step, **{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in sorted(metrics.items())}}
        line = json.dumps(record) + "\n"
        if self._file is not None:
            self._file.write(line)
            self._file.flush()
        else:
            self._lines.append(line)
            if time.monotonic() - self._flushed >= self._flush_seconds:
                self._flush()
        finite = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if self._tb is not None:
            for k, v in finite.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(finite, step=step)

    def _flush(self) -> None:
        self.path.write_text("".join(self._lines))
        self._flushed = time.monotonic()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        else:
            self._flush()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
