"""Loading the reward models (CLIP, LAION aesthetic head, LPIPS backbone) with their provenance.

Each file is looked up in the weights dir (layout written by `reward-server-weights`), then in the
standard cache (Hugging Face cache for open_clip, torch.hub's checkpoints dir for torchvision).
Nothing is ever downloaded here. Missing files stop the service with a list of what is missing,
unless the development flag `random_weights` is set: then the missing models are built with random
weights and every response names the terms they feed.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import lpips
import open_clip
import torch
import torchvision
from huggingface_hub import try_to_load_from_cache
from open_clip.pretrained import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from torch import nn

from reward_server.config import RewardSettings
from reward_server.nr_iqa import Brisque, Niqe, Piqe, provenance_note
from reward_server.precision import DTYPES, LowPrecision, native_bf16, network_precisions
from reward_server.terms import TERMS, random_terms

log = logging.getLogger(__name__)

PAPER_CLIP = "ViT-L-14"
CLIP_SUFFIXES = (".safetensors", ".bin", ".pt")
_OPEN_CLIP_PRECISION = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}  # open_clip keeps LayerNorm in float32
_LPIPS_BACKBONES = {
    "alex": torchvision.models.AlexNet_Weights.IMAGENET1K_V1,
    "vgg": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
    "squeeze": torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1,
}


class WeightsMissingError(RuntimeError):
    """Model files are missing and random weights were not requested; the message lists each file."""


@dataclass(frozen=True)
class Provenance:
    model: str
    source: Literal["weights_dir", "cache", "package", "formula", "random"]
    path: str | None
    note: str = ""

    @property
    def random(self) -> bool:
        return self.source == "random"


def clip_file_stem(settings: RewardSettings) -> str:
    return f"{settings.clip_model}__{settings.clip_pretrained}"


def lpips_backbone_filename(net: str) -> str:
    return Path(_LPIPS_BACKBONES[net].url).name


def lpips_backbone_url(net: str) -> str:
    return _LPIPS_BACKBONES[net].url


class AestheticHead(nn.Module):
    """LAION improved-aesthetic-predictor MLP; module indices match its released state dict."""

    def __init__(self, in_dim: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )

    def forward(self, normalized_embedding: torch.Tensor) -> torch.Tensor:
        return self.layers(normalized_embedding).squeeze(-1)


@dataclass
class HumanPreference:
    """An HPSv2-style human-preference model: an open_clip tower and the normalised embedding of the prompt it
    scores images against (HPSv2's score is that image-text cosine)."""

    model: nn.Module
    mean: torch.Tensor
    std: torch.Tensor
    size: tuple[int, int]
    text: torch.Tensor  # (1, D)


@dataclass
class RewardModels:
    clip: nn.Module
    clip_mean: torch.Tensor
    clip_std: torch.Tensor
    clip_size: tuple[int, int]
    clip_dtype: torch.dtype  # the CLIP tower's input dtype (its precision)
    iqa_text: torch.Tensor  # (2, D) normalised embeddings of the (good, bad) prompts
    aesthetic: AestheticHead
    lpips: nn.Module
    brisque: Brisque
    niqe: Niqe
    piqe: Piqe
    provenance: dict[str, Provenance]
    device: torch.device
    precision: dict[str, str]  # network -> the precision it runs in; every other term is float32
    hps: HumanPreference | None = None  # settings.hps_model; None: no `hps` term

    def random_terms(self) -> list[str]:
        return random_terms(self.provenance)

    def precision_of(self, terms: dict[str, float]) -> dict[str, str]:
        """The precision of each network that fed one of `terms`."""
        return {c: self.precision[c] for t in TERMS if t.name in terms for c in t.components if c in self.precision}

    def info(self) -> dict[str, dict]:
        return {name: {**asdict(p), "random": p.random} for name, p in self.provenance.items()}


def _find_clip(settings: RewardSettings) -> tuple[str, str] | None:
    if settings.weights_dir is not None:
        for suffix in CLIP_SUFFIXES:
            p = settings.weights_dir / "clip" / f"{clip_file_stem(settings)}{suffix}"
            if p.is_file():
                return "weights_dir", str(p)
    cfg = open_clip.get_pretrained_cfg(settings.clip_model, settings.clip_pretrained)
    repo = (cfg.get("hf_hub") or "").strip("/")
    if repo:
        for filename in (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME):
            hit = try_to_load_from_cache(repo, filename)
            if isinstance(hit, str) and os.path.isfile(hit):
                return "cache", hit
    return None


def _find_lpips_backbone(settings: RewardSettings) -> tuple[str, str] | None:
    name = lpips_backbone_filename(settings.lpips_net)
    candidates = []
    if settings.weights_dir is not None:
        candidates.append(("weights_dir", settings.weights_dir / "torchvision" / name))
    candidates.append(("cache", Path(torch.hub.get_dir()) / "checkpoints" / name))
    return next(((src, str(p)) for src, p in candidates if p.is_file()), None)


def _find_aesthetic(settings: RewardSettings) -> tuple[str, str] | None:
    if settings.weights_dir is None:
        return None
    p = settings.weights_dir / "aesthetic" / settings.aesthetic_file
    return ("weights_dir", str(p)) if p.is_file() else None


def _find_hps(settings: RewardSettings) -> tuple[str, str] | None:
    if settings.weights_dir is None:
        return None
    p = settings.weights_dir / "hps" / settings.hps_file
    return ("weights_dir", str(p)) if p.is_file() else None


def _build_hps(settings: RewardSettings, found: tuple[str, str] | None) -> tuple[nn.Module, Provenance]:
    """The human-preference tower in float32 (its score is a cosine of small differences, as CLIP-IQA's)."""
    model = open_clip.create_model(settings.hps_model, pretrained=None)
    if found is None:
        return model, Provenance(f"hps-{settings.hps_model}", "random", None, "RANDOM WEIGHTS (development flag)")
    source, path = found
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise WeightsMissingError(f"human-preference model {path}: not an open_clip {settings.hps_model} state dict ({str(exc)[:300]})") from None
    return model, Provenance(f"hps-{settings.hps_model}", source, path)


def _build_clip(settings: RewardSettings, found: tuple[str, str] | None, precision: str) -> tuple[nn.Module, Provenance]:
    cfg = open_clip.get_pretrained_cfg(settings.clip_model, settings.clip_pretrained)
    kwargs = dict(force_quick_gelu=bool(cfg.get("quick_gelu", False)), precision=_OPEN_CLIP_PRECISION[precision])
    paper = "" if settings.clip_model == PAPER_CLIP else f"not the paper's {PAPER_CLIP}"
    if found is None:
        model = open_clip.create_model(settings.clip_model, pretrained=None, **kwargs)
        note = "; ".join(filter(None, ["RANDOM WEIGHTS (development flag)", paper]))
        return model, Provenance(settings.clip_model, "random", None, note)
    source, path = found
    model = open_clip.create_model(settings.clip_model, pretrained=path, **kwargs)
    return model, Provenance(f"{settings.clip_model}/{settings.clip_pretrained}", source, path, paper)


def _build_aesthetic(in_dim: int, found: tuple[str, str] | None, clip_model: str) -> tuple[AestheticHead, Provenance]:
    head = AestheticHead(in_dim)
    if found is None:
        return head, Provenance(f"laion-aesthetic-mlp({in_dim})", "random", None, "RANDOM WEIGHTS (development flag)")
    source, path = found
    state = torch.load(path, map_location="cpu", weights_only=True)
    got = state.get("layers.0.weight")
    if got is None or got.shape[1] != in_dim:
        shape = None if got is None else tuple(got.shape)
        raise WeightsMissingError(
            f"aesthetic head {path}: first layer {shape} does not take the {in_dim}-d embedding of CLIP {clip_model}"
        )
    head.load_state_dict(state)
    return head, Provenance("laion-aesthetic-mlp", source, path)


def _build_lpips(net: str, found: tuple[str, str] | None, precision: str) -> tuple[nn.Module, Provenance]:
    # pnet_rand skips torchvision's download; the backbone is filled from our file below. The linear
    # calibration layers ship inside the lpips package and are always the real ones.
    with warnings.catch_warnings():  # lpips still passes torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    if found is None:
        prov = Provenance(f"lpips-{net}", "random", None, "RANDOM backbone (development flag); real lpips linear layers")
    else:
        source, path = found
        state = torch.load(path, map_location="cpu", weights_only=True)
        # lpips splits torchvision's `features` into slices that keep the original layer indices.
        mapped = {name: state[f"features.{name.split('.', 1)[1]}"] for name in model.net.state_dict()}
        model.net.load_state_dict(mapped)
        prov = Provenance(f"lpips-{net}", source, path)
    if precision != "float32":  # only the backbone: lpips' unit normalisation, linear layers and means stay float32
        model.net = LowPrecision(model.net, DTYPES[precision])
    return model, prov


def precisions_for(settings: RewardSettings, device: torch.device) -> dict[str, str]:
    """Network -> the precision it runs in for these settings (PrecisionError if the device cannot);
    cheap, so the CLI checks it before the port opens and load_models applies the same answer."""
    w = settings.weights
    return network_precisions(settings.precision, device, clip_iqa_weighted=w.clip_iqa > 0 and w.gen > 0)


def find_weights(settings: RewardSettings) -> dict[str, tuple[str, str] | None]:
    """Where each model file is (None: missing, built with random weights under the development flag);
    raises WeightsMissingError listing the missing files otherwise. Cheap: the CLI calls it before
    the port opens, so a missing file stops the service at once."""
    if settings.clip_model_config is not None:
        open_clip.add_model_config(settings.clip_model_config)
    if settings.clip_model not in open_clip.list_models():
        raise ValueError(f"clip_model {settings.clip_model!r} is not an open_clip architecture")
    found = {
        "clip": _find_clip(settings),
        "aesthetic": _find_aesthetic(settings),
        "lpips_backbone": _find_lpips_backbone(settings),
    }
    if settings.hps_model is not None:
        if settings.hps_model_config is not None:
            open_clip.add_model_config(settings.hps_model_config)
        if settings.hps_model not in open_clip.list_models():
            raise ValueError(f"hps_model {settings.hps_model!r} is not an open_clip architecture")
        found["hps"] = _find_hps(settings)
    missing = [name for name, hit in found.items() if hit is None]
    if missing and not settings.random_weights:
        wd = f"{settings.weights_dir}/" if settings.weights_dir else "<no --weights-dir given>/"
        where = {
            "clip": f"{wd}clip/{clip_file_stem(settings)}{{{','.join(CLIP_SUFFIXES)}}} and the Hugging Face "
            f"cache entry of open_clip tag {settings.clip_model}/{settings.clip_pretrained}",
            "aesthetic": f"{wd}aesthetic/{settings.aesthetic_file}",
            "lpips_backbone": f"{wd}torchvision/{lpips_backbone_filename(settings.lpips_net)} "
            f"and {torch.hub.get_dir()}/checkpoints/",
            "hps": f"{wd}hps/{settings.hps_file} (copy the human-preference model's file there by hand)",
        }
        lines = "\n".join(f"  - {m}: looked in {where[m]}" for m in missing)
        raise WeightsMissingError(
            f"reward model weights are missing:\n{lines}\n"
            "Prepare them on a connected machine with `reward-server-weights --out DIR`, copy DIR here and start "
            "with --weights-dir DIR; or, for development only, start with --random-weights."
        )
    return found


def _image_size(model: nn.Module) -> tuple[int, int]:
    size = model.visual.image_size
    return (size, size) if isinstance(size, int) else tuple(size)


def load_models(settings: RewardSettings, device: torch.device) -> RewardModels:
    """Load all reward models on `device`; raises WeightsMissingError when files are missing and
    PrecisionError when the device cannot run the requested precision."""
    precision = precisions_for(settings, device)
    log.info("precision %s of %s: %s (%s)", settings.precision, device, precision, native_bf16(device) or "no native bfloat16")
    found = find_weights(settings)

    torch.manual_seed(settings.seed)
    clip, clip_prov = _build_clip(settings, found["clip"], precision["clip"])
    embed_dim = clip.text_projection.shape[1] if hasattr(clip, "text_projection") else clip.visual.output_dim
    aesthetic, aes_prov = _build_aesthetic(embed_dim, found["aesthetic"], settings.clip_model)
    lp, lp_prov = _build_lpips(settings.lpips_net, found["lpips_backbone"], precision["lpips_backbone"])
    for m in (clip, aesthetic, lp):
        m.eval().requires_grad_(False).to(device)

    tokenizer = open_clip.get_tokenizer(settings.clip_model)
    with torch.inference_mode():
        text = clip.encode_text(tokenizer(list(settings.iqa_prompts)).to(device))
        text = text / text.norm(dim=-1, keepdim=True)
    size = _image_size(clip)
    hps, provenance = None, {}
    if settings.hps_model is not None:
        hps_net, provenance["hps"] = _build_hps(settings, found["hps"])
        hps_net.eval().requires_grad_(False).to(device)
        with torch.inference_mode():
            prompt = hps_net.encode_text(open_clip.get_tokenizer(settings.hps_model)([settings.hps_prompt]).to(device)).float()
        hps = HumanPreference(hps_net, torch.tensor(hps_net.visual.image_mean, device=device).view(1, 3, 1, 1),
                              torch.tensor(hps_net.visual.image_std, device=device).view(1, 3, 1, 1), _image_size(hps_net),
                              prompt / prompt.norm(dim=-1, keepdim=True))
    models = RewardModels(
        clip=clip,
        clip_mean=torch.tensor(clip.visual.image_mean, device=device).view(1, 3, 1, 1),
        clip_std=torch.tensor(clip.visual.image_std, device=device).view(1, 3, 1, 1),
        clip_size=size,
        clip_dtype=DTYPES[precision["clip"]],
        iqa_text=text.float(),
        aesthetic=aesthetic,
        lpips=lp,
        brisque=Brisque(device),
        niqe=Niqe(device),
        piqe=Piqe(device),
        provenance={
            "clip": clip_prov,
            "aesthetic": aes_prov,
            "lpips_backbone": lp_prov,
            **{name: Provenance(name.upper(), "package", None, provenance_note(name)) for name in ("brisque", "niqe")},
            "piqe": Provenance("PIQE", "formula", None, "no trained parameters (Venkatanath et al. 2015, as MATLAB's piqe)"),
            **provenance,
        },
        device=device,
        precision=precision,
        hps=hps,
    )
    if models.random_terms():
        log.warning("terms running on RANDOM weights (development only): %s", ", ".join(models.random_terms()))
    return models
