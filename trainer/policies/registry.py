"""Policy families by name: the keys are the config's `policy.kind` choices (as verl's registries)."""

from __future__ import annotations

from typing import Any, Callable

from trainer.policies.interface import Policy

Builder = Callable[[Any], Policy]

_FAMILIES: dict[str, Builder] = {}


def register_family(kind: str) -> Callable[[Builder], Builder]:
    """Decorator: `builder(section)` builds the family's policy from its config section (weights loaded)."""

    def add(builder: Builder) -> Builder:
        if kind in _FAMILIES:
            raise ValueError(f"policy family {kind!r} is already registered")
        _FAMILIES[kind] = builder
        return builder

    return add


def build_policy(section: Any) -> Policy:
    """The policy of the family named by `section.kind`."""
    kind = getattr(section, "kind", None)
    if kind not in _FAMILIES:
        raise ValueError(f"unknown policy kind {kind!r} (registered: {sorted(_FAMILIES)})")
    return _FAMILIES[kind](section)


def families() -> list[str]:
    return sorted(_FAMILIES)
