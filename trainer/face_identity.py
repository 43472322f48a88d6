"""Identity similarity of a restored face to its ground truth: the cosine of two ArcFace embeddings.

The recognition network is insightface's IResNet (arcface_torch, "ArcFace: Additive Angular Margin Loss",
Deng et al. 2019), written here with the module names of its released backbones (e.g. ms1mv3_arcface_r50
backbone.pth), so those files load as they are: conv1/bn1/prelu, layer1..4 of IBasicBlocks (bn1, conv1, bn2,
prelu, conv2, bn3, downsample), bn2, fc (512 * 7 * 7 -> 512), features (BatchNorm1d). facenet-pytorch is not in
this machine's package-index snapshot (and its InceptionResnetV1 is not ArcFace); insightface's wheel builds
C extensions and fetches its models at run time, hence this file. Input: RGB 112 x 112, (x - 0.5) / 0.5. The whole aligned face is resized to 112 px (FFHQ's alignment is
not ArcFace's five-point one; BFR papers' identity scores do the same), so absolute values differ from
insightface's verification protocol: compare arms, not papers.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

ARCHS = {"r18": (2, 2, 2, 2), "r34": (3, 4, 6, 3), "r50": (3, 4, 14, 3), "r100": (3, 13, 30, 3)}
INPUT_SIDE = 112


class IBasicBlock(nn.Module):
    """arcface_torch's pre-activation residual unit (BN-conv-BN-PReLU-conv-BN), the stride on the second conv."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes, eps=1e-5))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """ArcFace's IResNet backbone: (N, 3, 112, 112) in [-1, 1] -> (N, 512) embeddings (not normalised)."""

    def __init__(self, layers: tuple[int, ...], num_features: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        widths, inplanes = (64, 128, 256, 512), 64
        for i, (width, blocks) in enumerate(zip(widths, layers)):
            units = [IBasicBlock(inplanes, width, 2)] + [IBasicBlock(width, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*units))
            inplanes = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.dropout(torch.flatten(self.bn2(x), 1))))


class IdentityWeightsError(ValueError):
    """The identity network's weights file is missing or does not fit the architecture."""


class IdentityMetric:
    """cos(ArcFace(restored), ArcFace(target)) per image pair; `random` says whether it runs on random weights."""

    def __init__(self, arch: str = "r50", weights: Path | None = None, device: str | torch.device = "cpu", seed: int = 0):
        if arch not in ARCHS:
            raise IdentityWeightsError(f"unknown IResNet {arch!r}; expected one of {sorted(ARCHS)}")
        torch.manual_seed(seed)
        self.net = IResNet(ARCHS[arch])
        self.arch, self.weights = arch, weights
        if weights is not None:
            self.net.load_state_dict(_read_state(Path(weights), self.net))
        self.net.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)

    @property
    def random(self) -> bool:
        return self.weights is None

    def describe(self) -> str:
        if self.random:
            return f"ArcFace IResNet-{self.arch[1:]} on RANDOM weights (no eval.identity_weights): identity values are not meaningful"
        return f"ArcFace IResNet-{self.arch[1:]} from {self.weights}"

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, 512) L2-normalised embeddings."""
        x = F.interpolate(images.float().clamp(0, 1).to(self.device), size=(INPUT_SIDE, INPUT_SIDE), mode="bilinear", antialias=True, align_corners=False)
        return F.normalize(self.net((x - 0.5) / 0.5), dim=-1)

    def __call__(self, restored: Tensor, target: Tensor) -> Tensor:
        """(N,) cosine similarity of each restored face's embedding with its target's."""
        return (self.embed(restored) * self.embed(target)).sum(-1).cpu()


def _read_state(path: Path, net: nn.Module) -> dict[str, Tensor]:
    if not path.is_file():
        raise IdentityWeightsError(f"identity network weights not found: {path}")
    try:
        state = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise IdentityWeightsError(f"{path}: not a readable state dict ({exc})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise IdentityWeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")
    expected = net.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}  # a BatchNorm counter, unused in eval
    missing = sorted(set(expected) - set(state) - optional)
    wrong = sorted(k for k in expected if k in state and state[k].shape != expected[k].shape)
    if missing or wrong:
        raise IdentityWeightsError(f"{path}: not an ArcFace IResNet of this depth: {len(missing)} keys missing (e.g. {missing[:2]}), {len(wrong)} of another shape (e.g. {wrong[:2]})")
    return {k: state.get(k, expected[k]) for k in expected}
