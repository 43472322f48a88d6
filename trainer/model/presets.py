"""Named model sizes: the paper's AdaIR, a tiny one that trains on a 2-core CPU in minutes, and
the smallest valid one ("micro") for fast tests."""

from __future__ import annotations

from trainer.config import ModelConfig

# The values to copy into a YAML `model:` section.
TINY = dict(dim=12, num_blocks=[1, 1, 1, 1], num_refinement_blocks=0, heads=[1, 1, 2, 2], ffn_expansion_factor=2.0, head_hidden=32)

MICRO = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=0, heads=[1, 1, 1, 1], ffn_expansion_factor=1.0, head_hidden=8)


def model_preset(name: str) -> ModelConfig:
    if name == "paper":
        return ModelConfig()
    if name == "tiny":
        return ModelConfig(**TINY)
    if name == "micro":
        return ModelConfig(**MICRO)
    raise ValueError(f"unknown model preset {name!r} (choose 'paper', 'tiny' or 'micro')")
