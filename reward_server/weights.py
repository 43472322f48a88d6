"""`reward-server-weights`: fill a weights dir on a connected machine, or check one offline.

Layout (what reward_server.models reads):
  DIR/clip/<clip_model>__<clip_pretrained>.<safetensors|bin|pt>   open_clip checkpoint
  DIR/aesthetic/<aesthetic_file>                                  LAION aesthetic MLP state dict
  DIR/torchvision/<torchvision file name>                         LPIPS backbone (ImageNet weights)
  DIR/manifest.json                                               sources and sha256 of each file
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import open_clip
import torch
from open_clip.pretrained import download_pretrained

from irpo_common.device import resolve_device
from reward_server.config import RewardSettings, load_settings
from reward_server.models import (
    WeightsMissingError,
    clip_file_stem,
    load_models,
    lpips_backbone_filename,
    lpips_backbone_url,
)

AESTHETIC_URL = (
    "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac+logos+ava1-l14-linearMSE.pth"
)


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def prepare(settings: RewardSettings, out: Path, aesthetic_url: str = AESTHETIC_URL) -> dict:
    """Download every model file into `out` (needs network access) and write manifest.json."""
    cfg = open_clip.get_pretrained_cfg(settings.clip_model, settings.clip_pretrained)
    if not cfg:
        raise ValueError(f"open_clip has no pretrained tag {settings.clip_pretrained!r} for {settings.clip_model!r}")
    for sub in ("clip", "aesthetic", "torchvision"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    cached = Path(download_pretrained(cfg))
    clip_dst = out / "clip" / f"{clip_file_stem(settings)}{cached.suffix}"
    shutil.copyfile(cached, clip_dst)
    aes_dst = out / "aesthetic" / settings.aesthetic_file
    torch.hub.download_url_to_file(aesthetic_url, str(aes_dst))
    tv_name = lpips_backbone_filename(settings.lpips_net)
    tv_dst = out / "torchvision" / tv_name
    # torchvision file names carry the first hex digits of the file's sha256
    torch.hub.download_url_to_file(lpips_backbone_url(settings.lpips_net), str(tv_dst), hash_prefix=tv_name.rsplit("-", 1)[-1].split(".")[0])
    manifest = {
        str(p.relative_to(out)): {"source": src, "sha256": _sha256(p)}
        for p, src in ((clip_dst, f"open_clip {settings.clip_model}/{settings.clip_pretrained}"),
                       (aes_dst, aesthetic_url), (tv_dst, lpips_backbone_url(settings.lpips_net)))
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="reward-server-weights", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="weights dir to fill (or to check with --check)")
    p.add_argument("--config", help="reward-server YAML settings (clip_model, clip_pretrained, lpips_net, aesthetic_file)")
    p.add_argument("--check", action="store_true", help="offline: load every model from --out and print its provenance")
    p.add_argument("--aesthetic-url", default=AESTHETIC_URL)
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        settings = load_settings(args.config, weights_dir=out, random_weights=False)
        if args.check:
            models = load_models(settings, resolve_device(settings.device))
            print(json.dumps(models.info(), indent=2))
            return
        manifest = prepare(settings, out, args.aesthetic_url)
    except (FileNotFoundError, ValueError, WeightsMissingError, OSError, RuntimeError) as exc:
        sys.exit(f"reward-server-weights: {exc}")
    print(json.dumps(manifest, indent=2))
    print(f"reward-server-weights: ready; start the service with --weights-dir {out}")


if __name__ == "__main__":
    main()
