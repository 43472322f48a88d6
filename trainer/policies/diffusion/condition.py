"""How the degraded image reaches the denoiser, batched like the rows it conditions."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Condition:
    concat: Tensor | None  # (M, c, h, w) stacked with x_t on channels: the image in [-1, 1] at latent size, or its latent
    control: Tensor | None  # (M, 3, H, W) a ControlNet's input in [0, 1], at the output size
    # (M, C, h, w) the degraded image in the chain's space (encoded at the output size, never noised): the origin of
    # the residual frame and the start of a chain below strength 1; None when neither is configured
    origin: Tensor | None = None

    def repeat(self, k: int, interleave: bool = True) -> "Condition":
        """Each row k times in a row (interleave: rows of one image stay together), or the whole batch k times."""

        def rep(v: Tensor | None) -> Tensor | None:
            if v is None:
                return None
            return v.repeat_interleave(k, dim=0) if interleave else v.repeat(k, *([1] * (v.dim() - 1)))

        return Condition(rep(self.concat), rep(self.control), rep(self.origin))
