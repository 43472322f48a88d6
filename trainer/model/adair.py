"""AdaIR backbone (Restormer U-Net with three frequency modules in the decoder).

Module and parameter names follow AdaIR's public model (net/model.py of c-yn/AdaIR) so its
Lightning checkpoints load with a strict key check. The code is our own; only the names and
the structure are shared.

Two deliberate departures from AdaIR, both inside FreModule (AdaIR's "AFLB"):
- The low-frequency mask. AdaIR keeps a centred box of half-size int((h // 128) * rate), which
  is empty for every feature map under 256 px, so on 128 px training crops the rate changes
  nothing. Ours is a soft elliptical low-pass whose radii are the rates times the Nyquist
  frequency: continuous in the rate at every size, so the rate actions always act.
- The rates and the output gates are actions chosen by the policy (trainer/model/policy.py)
  through a `decide` callback instead of being computed inside the module. AdaIR's
  `rate_conv` (and its unused `conv` and `score_gen`) are kept only so checkpoints load.
A fresh model may start para1 and the cross-attention temperatures elsewhere than AdaIR's 0 and 1
(ModelConfig.fre_para1_init / fre_temperature_init, docs/exploration.md); the defaults are AdaIR's.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# decide(kind, pooled_features) -> actions (N, 2) in (0, 1); bound per module by the policy.
Decide = Callable[[Literal["rate", "fuse"], Tensor], Tensor]

# Width of the soft mask edge, in units of the squared normalised radius (the default of
# ModelConfig.fre_mask_softness). At 0.25 the mask keeps sigmoid(4) = 98% of DC in the low band.
MASK_SOFTNESS = 0.25


class ChannelLayerNorm(nn.Module):
    """LayerNorm over channels of an NCHW map (AdaIR's 'WithBias' LayerNorm, eps 1e-5)."""

    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def channel_attention(q: Tensor, k: Tensor, v: Tensor, heads: int, temperature: Tensor) -> Tensor:
    """Transposed (channel-by-channel) attention of Restormer's MDTA, per head."""
    b, c, h, w = q.shape
    q, k, v = (t.reshape(b, heads, c // heads, h * w) for t in (q, k, v))
    q = F.normalize(q, dim=-1)
    k = F.normalize(k, dim=-1)
    attn = (q @ k.transpose(-2, -1) * temperature).softmax(dim=-1)
    return (attn @ v).reshape(b, c, h, w)


class FeedForward(nn.Module):
    """Gated depth-wise conv feed-forward (GDFN)."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class Attention(nn.Module):
    """Multi-Dconv head transposed self-attention (MDTA)."""

    def __init__(self, dim: int, num_heads: int, bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        return self.project_out(channel_attention(q, k, v, self.num_heads, self.temperature))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class Chanel_Cross_Attention(nn.Module):  # noqa: N801 - AdaIR's class name (spelling included)
    """Channel cross-attention: queries from x, keys/values from y."""

    def __init__(self, dim: int, num_head: int, bias: bool):
        super().__init__()
        self.num_head = num_head
        self.temperature = nn.Parameter(torch.ones(num_head, 1, 1))
        self.q = nn.Conv2d(dim, dim, 1, bias=bias)
        self.q_dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=bias)
        self.kv = nn.Conv2d(dim, dim * 2, 1, bias=bias)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, 3, padding=1, groups=dim * 2, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        q = self.q_dwconv(self.q(x))
        k, v = self.kv_dwconv(self.kv(y)).chunk(2, dim=1)
        return self.project_out(channel_attention(q, k, v, self.num_head, self.temperature))


class SpatialGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.spatial = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        stats = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.spatial(stats))


class ChannelGate(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(dim, dim // 16, 1, bias=False), nn.ReLU(), nn.Conv2d(dim // 16, dim, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        peak = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + peak)


class FreRefine(nn.Module):
    """Frequency modulation: each band is gated by statistics of the other."""

    def __init__(self, dim: int):
        super().__init__()
        self.SpatialGate = SpatialGate()  # noqa: N815 - AdaIR's attribute name
        self.ChannelGate = ChannelGate(dim)  # noqa: N815
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        return self.proj(low * self.SpatialGate(high) + high * self.ChannelGate(low))


def soft_lowpass_mask(rates: Tensor, height: int, width: int, softness: float = MASK_SOFTNESS) -> Tensor:
    """Soft elliptical low-pass mask (N, 1, H, W) in unshifted FFT layout.

    rates[:, 0] (r_h) and rates[:, 1] (r_l) scale the vertical and horizontal cut-offs as
    fractions of the Nyquist frequency. Squared distances keep the gradient finite at DC.
    """
    fy = torch.fft.fftfreq(height, device=rates.device, dtype=rates.dtype).view(1, height, 1)
    fx = torch.fft.fftfreq(width, device=rates.device, dtype=rates.dtype).view(1, 1, width)
    cut = (0.5 * rates).clamp_min(1e-4)
    dist2 = (fy / cut[:, 0, None, None]) ** 2 + (fx / cut[:, 1, None, None]) ** 2
    return torch.sigmoid((1.0 - dist2) / softness).unsqueeze(1)


class FreModule(nn.Module):
    """Adaptive frequency learning block on one decoder feature map y, guided by the input image."""

    def __init__(self, dim: int, num_heads: int, bias: bool, in_dim: int = 3, para1_init: float = 0.0, temperature_init: float = 1.0, mask_softness: float = MASK_SOFTNESS):
        super().__init__()
        self.mask_softness = mask_softness
        self.conv = nn.Conv2d(in_dim, dim, 3, padding=1, bias=False)  # unused by AdaIR too; kept for checkpoints
        self.conv1 = nn.Conv2d(in_dim, dim, 3, padding=1, bias=False)
        self.score_gen = nn.Conv2d(2, 2, 7, padding=3)  # unused by AdaIR too; kept for checkpoints
        # AdaIR starts para1 at 0 (the module starts as the identity); then g_o and both rates are
        # inert until para1 grows. A fresh model may start it elsewhere (ModelConfig.fre_para1_init).
        self.para1 = nn.Parameter(torch.full((dim, 1, 1), float(para1_init)))
        self.para2 = nn.Parameter(torch.ones(dim, 1, 1))
        self.channel_cross_l = Chanel_Cross_Attention(dim, num_heads, bias)
        self.channel_cross_h = Chanel_Cross_Attention(dim, num_heads, bias)
        self.channel_cross_agg = Chanel_Cross_Attention(dim, num_heads, bias)
        # With unit temperature the L2-normalised logits lie in [-1, 1], the softmax is nearly
        # uniform and the frequency split (the rates) hardly reaches the output.
        for attn in (self.channel_cross_l, self.channel_cross_h, self.channel_cross_agg):
            nn.init.constant_(attn.temperature, temperature_init)
        self.frequency_refine = FreRefine(dim)
        # AdaIR's deterministic rate predictor; the policy's rate head replaces it (see module doc).
        self.rate_conv = nn.Sequential(nn.Conv2d(dim, dim // 8, 1, bias=False), nn.GELU(), nn.Conv2d(dim // 8, 2, 1, bias=False))

    def forward(self, image: Tensor, y: Tensor, decide: Decide) -> Tensor:
        image = F.interpolate(image, size=y.shape[-2:], mode="bilinear", align_corners=False)
        feat = self.conv1(image)
        rates = decide("rate", feat.mean(dim=(2, 3)))
        gates = decide("fuse", y.mean(dim=(2, 3)))
        high, low = self.split_frequencies(feat, rates)
        high = self.channel_cross_l(high, y)
        low = self.channel_cross_h(low, y)
        out = self.channel_cross_agg(y, self.frequency_refine(low, high))
        # AdaIR returns out * para1 + y * para2; the gates scale the two terms, times 2 so that
        # gates at 0.5 (the mean of a symmetric Beta) give exactly AdaIR's blend.
        g_f = 2.0 * gates[:, 0, None, None, None]
        g_o = 2.0 * gates[:, 1, None, None, None]
        return g_f * (y * self.para2) + g_o * (out * self.para1)

    def split_frequencies(self, feat: Tensor, rates: Tensor) -> tuple[Tensor, Tensor]:
        """(high, low) magnitude maps of feat split by the soft mask set by rates (N, 2)."""
        spectrum = torch.fft.fft2(feat, norm="forward")
        mask = soft_lowpass_mask(rates, *feat.shape[-2:], self.mask_softness)
        low = torch.fft.ifft2(spectrum * mask, norm="forward").abs()
        high = torch.fft.ifft2(spectrum * (1.0 - mask), norm="forward").abs()
        return high, low


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_c: int = 3, embed_dim: int = 48, bias: bool = False):
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, 3, padding=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    def __init__(self, n_feat: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Upsample(nn.Module):
    def __init__(self, n_feat: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class AdaIR(nn.Module):
    """The restoration U-Net. Input sides must be multiples of 8 (three 2x downsamplings)."""

    def __init__(
        self,
        dim: int = 48,
        num_blocks: tuple[int, ...] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: tuple[int, ...] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        fre_para1_init: float = 0.0,
        fre_temperature_init: float = 1.0,
        fre_mask_softness: float = MASK_SOFTNESS,
    ):
        super().__init__()

        def stage(width: int, n: int, h: int) -> nn.Sequential:
            return nn.Sequential(*[TransformerBlock(width, h, ffn_expansion_factor, bias) for _ in range(n)])

        self.patch_embed = OverlapPatchEmbed(3, dim)
        # AdaIR gives all three frequency modules heads[2].
        fre = dict(para1_init=fre_para1_init, temperature_init=fre_temperature_init, mask_softness=fre_mask_softness)
        self.fre1 = FreModule(dim * 8, heads[2], bias, **fre)
        self.fre2 = FreModule(dim * 4, heads[2], bias, **fre)
        self.fre3 = FreModule(dim * 2, heads[2], bias, **fre)
        self.encoder_level1 = stage(dim, num_blocks[0], heads[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = stage(dim * 2, num_blocks[1], heads[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = stage(dim * 4, num_blocks[2], heads[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = stage(dim * 8, num_blocks[3], heads[3])
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=bias)
        self.decoder_level3 = stage(dim * 4, num_blocks[2], heads[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.decoder_level2 = stage(dim * 2, num_blocks[1], heads[1])
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = stage(dim * 2, num_blocks[0], heads[0])
        self.refinement = stage(dim * 2, num_refinement_blocks, heads[0])
        self.output = nn.Conv2d(dim * 2, 3, 3, padding=1, bias=bias)

    def frequency_modules(self) -> tuple[FreModule, FreModule, FreModule]:
        """The three frequency modules in the order the forward pass visits them."""
        return self.fre1, self.fre2, self.fre3

    def encode(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Encoder features (level 1, 2, 3, latent); they do not depend on any action."""
        if image.shape[-1] % 8 or image.shape[-2] % 8:
            raise ValueError(f"AdaIR needs sides that are multiples of 8, got {tuple(image.shape[-2:])}")
        enc1 = self.encoder_level1(self.patch_embed(image))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        return enc1, enc2, enc3, self.latent(self.down3_4(enc3))

    def decode(self, image: Tensor, features: tuple[Tensor, Tensor, Tensor, Tensor], decide: Callable[[int, Literal["rate", "fuse"], Tensor], Tensor]) -> Tensor:
        """The decoder; decide(module_index, kind, pooled) supplies each frequency module's actions."""

        def at(i: int) -> Decide:
            return lambda kind, pooled: decide(i, kind, pooled)

        enc1, enc2, enc3, latent = features
        latent = self.fre1(image, latent, at(0))
        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec3 = self.fre2(image, dec3, at(1))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec2 = self.fre3(image, dec2, at(2))
        dec1 = self.refinement(self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1)))
        return self.output(dec1) + image

    def forward(self, image: Tensor, decide: Callable[[int, Literal["rate", "fuse"], Tensor], Tensor]) -> Tensor:
        """Restore `image` (N, 3, H, W)."""
        return self.decode(image, self.encode(image), decide)
