"""Policy families by name: the keys are the config's `policy.kind` choices (as verl's registries).

The built-in families register when their module is imported. They are imported on first use,
not by this package, because the IRPO family's model (trainer/model) itself imports the interface.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from trainer.policies.interface import Policy

# builder(section, load_weights) -> the family's policy; load_weights=False builds the architecture
# only (rollout actors receive their weights with every call; preflight checks shapes on it)
Builder = Callable[[Any, bool], Policy]

BUILTIN_FAMILIES = ("trainer.policies.irpo", "trainer.policies.diffusion")

_FAMILIES: dict[str, Builder] = {}


def register_family(kind: str) -> Callable[[Builder], Builder]:
    """Decorator: `builder(section, load_weights)` builds the family's policy from its config section."""

    def add(builder: Builder) -> Builder:
        if kind in _FAMILIES:
            raise ValueError(f"policy family {kind!r} is already registered")
        _FAMILIES[kind] = builder
        return builder

    return add


def _load_builtins() -> None:
    for module in BUILTIN_FAMILIES:
        importlib.import_module(module)


def build_policy(section: Any, load_weights: bool = True) -> Policy:
    """The policy of the family named by `section.kind`, with the section's starting weights unless load_weights=False."""
    _load_builtins()
    kind = getattr(section, "kind", None)
    if kind not in _FAMILIES:
        raise ValueError(f"unknown policy kind {kind!r} (registered: {sorted(_FAMILIES)})")
    return _FAMILIES[kind](section, load_weights)


def families() -> list[str]:
    _load_builtins()
    return sorted(_FAMILIES)
