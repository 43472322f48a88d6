"""Settings of the reward service: defaults < YAML file (--config) < REWARD_SERVER_* env vars < CLI flags.

The reward weights and their meaning are the shared reward specification (irpo_common.reward_spec).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from irpo_common.http_guards import BearerToken
from irpo_common.reward_spec import RewardWeights
from reward_server.precision import Precision


# measured: benchmarks/bench_nr_iqa_sizes.py, docs/benchmarks.md (issue 23)
NR_MIN_SIDE = {"brisque": 96, "niqe": 384, "piqe": 256}

class RewardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REWARD_SERVER_", extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", description="Bind address; loopback unless deliberately exposed.")
    port: int = Field(8100, ge=0, le=65535, description="TCP port the service listens on.")
    device: str = Field("auto", description="'auto' (cuda when available, else cpu), 'cpu', 'cuda', 'cuda:N'.")
    token: BearerToken = Field(None, description="Bearer token required on /v1/* (env REWARD_SERVER_TOKEN); unset = no auth, empty = a start-up error.")
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
    piqe_range: tuple[float, float] = Field((0.0, 100.0), description="PIQE values mapped onto [1, 0] (lower is better; the metric's own 0-100).")
    nr_min_side: dict[Literal["brisque", "niqe", "piqe"], int] = Field(
        default_factory=lambda: dict(NR_MIN_SIDE),
        description="Smallest side (px) at which a no-reference term is computed; a request weighting it on a smaller image "
        "gets a 400 naming it. Defaults: the smallest measured size where the term worsens with each step of noise, blur "
        "and JPEG in >= 80% of cases on the demo photos (docs/benchmarks.md, issue 23). Floors: BRISQUE 7, NIQE 96, PIQE 16.",
    )
    precision: Precision = Field(
        "auto",
        description="Precision of the CLIP tower and the LPIPS backbone: float32, bfloat16, float16 (CUDA only), or "
        "'auto' = bfloat16 where the device has native bf16 (CUDA compute capability >= 8.0; CPU with AMX or "
        "AVX512-BF16), else float32. PSNR, SSIM, task terms and BRISQUE/NIQE always run in float32.",
    )
    lpips_net: Literal["alex", "vgg", "squeeze"] = Field("alex", description="LPIPS backbone network.")
    iqa_prompts: tuple[str, str] = Field(("Good photo.", "Bad photo."), description="CLIP-IQA antonym prompts.")
    hps_model: str | None = Field(None, description="open_clip architecture of the human-preference model (HPSv2: ViT-H-14), loaded from weights_dir/hps/hps_file; None = no `hps` term (not loaded; reported as skipped).")
    hps_model_config: Path | None = Field(None, description="Extra open_clip architecture JSON to register for hps_model (small CPU models).")
    hps_file: str = Field("HPS_v2.1_compressed.pt", description="The human-preference model's state dict under weights_dir/hps/ (HPSv2's released file name; an open_clip state dict, optionally under 'state_dict').")
    hps_prompt: str = Field("A high-quality photo of a face.", description="The prompt the human-preference model compares the image with: HPSv2 scores an image against its text; a restorer has no prompt, so one quality description stands in (LRPO's wording is not published).")
    hps_range: tuple[float, float] = Field((0.2, 0.35), description="HPS cosine mapped linearly onto [0, 1] (HPSv2 scores of generated images lie around 0.2-0.3).")
    psnr_range_db: tuple[float, float] = Field((20.0, 40.0), description="PSNR thresholds tau_min, tau_max mapped onto [0, 1].")
    weights: RewardWeights = Field(default_factory=RewardWeights)
    max_pixels: int = Field(2048 * 2048, gt=0, description="Per-image pixel limit (decompression bombs).")
    min_side: int = Field(7, ge=7, description="Smallest accepted side (the SSIM window is 7x7); terms whose model needs more (LPIPS, BRISQUE, NIQE) are skipped below their own minimum, or refused when weighted (/v1/info lists each).")
    max_body_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Largest accepted request body in bytes (default 64 MiB); larger ones get 413."
    )
    max_batch_items: int = Field(256, gt=0, description="Items in one /v1/score/batch request.")
    micro_batch_size: int = Field(32, gt=0, description="Items scored together on the device.")
    micro_batch_wait_ms: float = Field(5.0, ge=0, description="How long the batcher waits to fill a micro-batch.")
    max_request_pixels: int = Field(
        2**25, gt=0, description="Decoded pixels of one request over all its images (12 bytes each as float32 RGB), "
        "checked from the image headers before decoding; over it is a 400."
    )
    max_pending_requests: int = Field(
        64, gt=0, description="Scoring requests admitted at once (reading, decoding, queued, scoring); more get 503 "
        "with Retry-After before their body is read. With max_body_bytes and max_request_pixels it bounds memory."
    )
    max_queue_items: int = Field(
        512, gt=0, description="Items waiting for the device; a request that would overfill the queue gets 503 with "
        "Retry-After (a bounded queue, like TorchServe's and Triton's)."
    )
    max_queue_wait_s: float = Field(
        1.0, ge=0, description="Shed a request with 503 (Retry-After: the expected wait) when the requests already in "
        "flight need longer than this to score, estimated from the measured device seconds per item (Triton's queue "
        "policy rejects on queue time the same way). It bounds an admitted request's latency to about this plus its "
        "own scoring under any burst; a request that finds nothing in flight is always taken. 0: no bound."
    )
    request_timeout_s: float = Field(
        45.0, gt=0, description="Deadline of a scoring request from its arrival; past it, its queued items are dropped "
        "and it gets 503. Keep it below the client's timeout (the trainer's reward.timeout_s, 60 s), so that no work "
        "outlives its client."
    )
    body_timeout_s: float = Field(30.0, gt=0, description="Time to receive a whole request body; slower uploads get 408.")
    retry_after_s: int = Field(1, ge=0, description="Retry-After seconds sent with a 503 (overloaded, not ready).")

    @field_validator("psnr_range_db", "aesthetic_range", "brisque_range", "niqe_range", "piqe_range", "hps_range")
    @classmethod
    def _increasing(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"range must be increasing, got {v}")
        return v

    @field_validator("nr_min_side")
    @classmethod
    def _nr_floors(cls, v: dict[str, int]) -> dict[str, int]:
        floors = {"brisque": 7, "niqe": 96, "piqe": 16}  # a 7x7 window; one 96x96 patch; one 16x16 block
        low = {k: f"{v.get(k)} < {f}" for k, f in floors.items() if v.get(k, f) < f}
        if low:
            raise ValueError(f"nr_min_side below what the metric is defined on: {low}")
        return {**NR_MIN_SIDE, **v}

    @model_validator(mode="after")
    def _config_file_exists(self) -> "RewardSettings":
        for name in ("clip_model_config", "hps_model_config"):
            if getattr(self, name) is not None and not getattr(self, name).is_file():
                raise ValueError(f"{name}: file not found: {getattr(self, name)}")
        if self.weights.hps > 0 and self.weights.gen > 0 and self.hps_model is None:
            raise ValueError("weights.hps > 0 needs a human-preference model: set hps_model (and its weights under weights_dir/hps/)")
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
