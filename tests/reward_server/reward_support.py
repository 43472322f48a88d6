"""Constants and helpers shared by the reward tests (importable by name, unlike conftest.py)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
TOKEN = "test-token-123"
LIMITS = {"max_pixels": 200 * 200, "max_body_bytes": 1_500_000, "max_batch_items": 32}


def tiny_clip_env() -> dict[str, str]:
    return {
        "REWARD_SERVER_CLIP_MODEL": "tiny-clip",
        "REWARD_SERVER_CLIP_MODEL_CONFIG": str(HERE / "tiny-clip.json"),
    }
