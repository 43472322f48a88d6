"""The one table of synthesised degradations a data config uses: task -> variant name -> degradation.

The all-in-one tasks' variants (trainer.data.degradations) and the face task's BFR degradation with the
ranges of data.face (trainer.data.face); the OOD table swaps each for a family the training set never shows.
"""

from __future__ import annotations

from trainer.config import DataConfig
from trainer.data.degradations import OOD_VARIANTS, Degrade, training_variants
from trainer.data.face import SEVERE, bfr_degradation


def variants(cfg: DataConfig, ood: bool = False) -> dict[str, dict[str, Degrade]]:
    if ood:
        return {**OOD_VARIANTS, "face": {"severe": bfr_degradation(SEVERE)}}
    return {**training_variants(cfg.noise_sigmas), "face": {"bfr": bfr_degradation(cfg.face)}}
