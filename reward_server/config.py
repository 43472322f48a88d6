"""Settings of the reward service: defaults < YAML file (--config) < REWARD_SERVER_* env vars < CLI flags.

Reward weights are the paper's (IRPO Appendix B, ../shared/notes/method.md):
R = 0.6 R_gen + 0.1 R_judge + 0.3 R_task, R_gen = 0.25 CLIP + 0.25 LPIPS + 0.15 aesthetic
+ 0.20 PSNR + 0.15 SSIM. `clip_iqa` is our extra no-reference term; weight 0 by default so the
paper's reward is unchanged, but it is always computed and reported. `brisque` and `niqe` (no
reference, published parameters) also default to 0 and are computed only when weighted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

TASKS = ("denoise", "derain", "dehaze", "deblur", "lowlight")
GEN_TERMS = ("clip_similarity", "lpips", "aesthetic", "psnr", "ssim", "clip_iqa", "brisque", "niqe")
GROUPS = ("gen", "judge", "task")
WEIGHT_KEYS = GEN_TERMS + GROUPS


class RewardWeights(BaseModel):
    """Two-level weights: `gen` terms make R_gen; groups gen/judge/task make R."""

    model_config = ConfigDict(extra="forbid")
    clip_similarity: float = Field(0.25, ge=0, description="R_gen: CLIP cosine similarity of restored and reference.")
    lpips: float = Field(0.25, ge=0, description="R_gen: 1 - LPIPS distance to the reference.")
    aesthetic: float = Field(0.15, ge=0, description="R_gen: LAION aesthetic rating mapped by aesthetic_range.")
    psnr: float = Field(0.20, ge=0, description="R_gen: PSNR to the reference mapped by psnr_range_db.")
    ssim: float = Field(0.15, ge=0, description="R_gen: SSIM to the reference.")
    clip_iqa: float = Field(0.0, ge=0, description="R_gen: CLIP-IQA (no reference); 0 keeps the paper's reward.")
    brisque: float = Field(0.0, ge=0, description="R_gen: BRISQUE (no reference, LIVE model) mapped by brisque_range; computed only when > 0.")
    niqe: float = Field(0.0, ge=0, description="R_gen: NIQE (no reference, >= two 96x96 patches) mapped by niqe_range; computed only when > 0.")
    gen: float = Field(0.6, ge=0, description="R: weight of the generic term R_gen.")
    judge: float = Field(0.1, ge=0, description="R: weight of the caller-supplied judge score.")
    task: float = Field(0.3, ge=0, description="R: weight of the task-aware term R_task.")

    def override(self, partial: dict[str, float] | None) -> "RewardWeights":
        """A copy with some weights replaced; unknown names or negative values raise ValueError."""
        if not partial:
            return self
        unknown = sorted(set(partial) - set(WEIGHT_KEYS))
        if unknown:
            raise ValueError(f"weights: unknown name(s) {unknown}; allowed: {list(WEIGHT_KEYS)}")
        return RewardWeights.model_validate({**self.model_dump(), **partial})


class RewardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REWARD_SERVER_", extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", description="Bind address; loopback unless deliberately exposed.")
    port: int = Field(8100, ge=0, le=65535, description="TCP port the service listens on.")
    device: str = Field("auto", description="'auto' (cuda when available, else cpu), 'cpu', 'cuda', 'cuda:N'.")
    token: SecretStr | None = Field(None, description="Bearer token required on /v1/* (env REWARD_SERVER_TOKEN).")
    weights_dir: Path | None = Field(None, description="Folder prepared by reward-server-weights.")
    random_weights: bool = Field(False, description="Development only: build missing models with random weights.")
    seed: int = Field(0, description="Seed of random-weight models (development flag).")
    clip_model: str = Field("ViT-L-14", description="open_clip architecture (the paper: ViT-L-14).")
    clip_pretrained: str = Field("openai", description="open_clip pretrained tag (names the file and the cache entry).")
    clip_model_config: Path | None = Field(None, description="Extra open_clip architecture JSON to register (small CPU models).")
    aesthetic_file: str = Field("sac+logos+ava1-l14-linearMSE.pth", description="LAION aesthetic MLP state dict.")
    aesthetic_range: tuple[float, float] = Field((1.0, 10.0), description="Aesthetic rating mapped linearly onto [0, 1].")
    brisque_range: tuple[float, float] = Field((0.0, 150.0), description="BRISQUE values mapped onto [1, 0] (lower is better; pyiqa's 0-150).")
    niqe_range: tuple[float, float] = Field((0.0, 100.0), description="NIQE values mapped onto [1, 0] (lower is better; pyiqa's 0-100).")
    lpips_net: Literal["alex", "vgg", "squeeze"] = Field("alex", description="LPIPS backbone network.")
    iqa_prompts: tuple[str, str] = Field(("Good photo.", "Bad photo."), description="CLIP-IQA antonym prompts.")
    psnr_range_db: tuple[float, float] = Field((20.0, 40.0), description="PSNR thresholds tau_min, tau_max mapped onto [0, 1].")
    weights: RewardWeights = Field(default_factory=RewardWeights)
    max_pixels: int = Field(2048 * 2048, gt=0, description="Per-image pixel limit (decompression bombs).")
    min_side: int = Field(7, ge=7, description="Smallest accepted side (the SSIM window is 7x7).")
    max_body_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Largest accepted request body in bytes (default 64 MiB); larger ones get 413."
    )
    max_batch_items: int = Field(256, gt=0, description="Items in one /v1/score/batch request.")
    micro_batch_size: int = Field(32, gt=0, description="Items scored together on the device.")
    micro_batch_wait_ms: float = Field(5.0, ge=0, description="How long the batcher waits to fill a micro-batch.")

    @field_validator("psnr_range_db", "aesthetic_range", "brisque_range", "niqe_range")
    @classmethod
    def _increasing(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"range must be increasing, got {v}")
        return v

    @model_validator(mode="after")
    def _config_file_exists(self) -> "RewardSettings":
        if self.clip_model_config is not None and not self.clip_model_config.is_file():
            raise ValueError(f"clip_model_config: file not found: {self.clip_model_config}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls)


def load_settings(config_file: str | Path | None = None, **overrides) -> RewardSettings:
    """Settings from an optional YAML file, the environment and explicit overrides (highest)."""
    if config_file is None:
        return RewardSettings(**overrides)
    path = Path(config_file)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")

    class _FromFile(RewardSettings):
        model_config = SettingsConfigDict(yaml_file=path)

    return _FromFile(**overrides)
