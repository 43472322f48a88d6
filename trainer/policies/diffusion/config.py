"""The diffusion family's config sections (defined in trainer/config.py with all other settings) and its tiny preset.

The tiny preset (`DIFFUSION_TINY`) trains on a 2-core CPU.
"""

from trainer.config import DiffusionConfig, DiffusionRLConfig

# The values to copy into a YAML `policy.diffusion:` section for the CPU demo and tests.
DIFFUSION_TINY = dict(block_out_channels=[16, 32, 64], layers_per_block=1, norm_num_groups=8, sampling_steps=10)

__all__ = ["DIFFUSION_TINY", "DiffusionConfig", "DiffusionRLConfig"]
