"""LoRA adapters (peft) on the denoisers, their reference switch and their merge.

peft's inject_adapter_in_model works on any module, so UNet2DModel (LDM-SR, no PeftAdapterMixin)
takes adapters the same way as UNet2DConditionModel and ControlNetModel. The base weights are frozen
(requires_grad False), so only the adapters are trained, synced and checkpointed; with them disabled
the module is exactly the base model, which is the KL reference (DiffusionNFT's `disable_adapter()`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

from torch import nn

from trainer.config import DiffusionLoRAConfig

ADAPTER = "default"


def _layers(module: nn.Module) -> list[nn.Module]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in module.modules() if isinstance(m, BaseTunerLayer)]


def add_lora(module: nn.Module, cfg: DiffusionLoRAConfig) -> int:
    """Freeze `module` and inject adapters on cfg.targets; returns how many layers got one (a clear error when none)."""
    from peft import LoraConfig, inject_adapter_in_model

    module.requires_grad_(False)
    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha if cfg.alpha is not None else 2 * cfg.rank, target_modules=list(cfg.targets),
                        lora_dropout=cfg.dropout, init_lora_weights="gaussian")  # flow_grpo's init; lora_B starts at 0 either way
    try:
        inject_adapter_in_model(config, module, adapter_name=ADAPTER)
    except ValueError as exc:
        raise ValueError(f"policy.diffusion.lora.targets={cfg.targets} match no layer of the {type(module).__name__} ({exc})") from None
    return len(_layers(module))


@contextmanager
def adapters_disabled(modules: Sequence[nn.Module]) -> Iterator[None]:
    """The base models inside the block; the adapters (and their trainability) come back after it."""
    layers = [layer for m in modules for layer in _layers(m)]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)


def merge_lora(module: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer and put the plain layer back: the diffusers model as it was, updated."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, child in list(module.named_children()):
        if isinstance(child, BaseTunerLayer):
            child.merge()
            setattr(module, name, child.get_base_layer())
        else:
            merge_lora(child)
    return module
