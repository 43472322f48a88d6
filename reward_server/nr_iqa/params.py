"""The published parameters of BRISQUE and NIQE, stored in params/ with their provenance.

They were read out of the PyPI wheels that ship them (scripts/extract_nr_iqa_params.py rebuilds
the files and records the hashes in params/provenance.json); no package code is used.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import numpy as np


def _file(name: str):
    return resources.files("reward_server.nr_iqa").joinpath("params", name)


@cache
def provenance() -> dict[str, dict]:
    return json.loads(_file("provenance.json").read_text(encoding="utf-8"))


def provenance_note(metric: str) -> str:
    """One line for /v1/info and reports, e.g. 'parameters shipped in brisque 0.2.0 (Apache-2.0)'."""
    p = provenance()[metric]
    return f"parameters shipped in {p['package']} {p['version']} ({p['licence']}): {', '.join(p['files'])}"


def load(metric: str) -> dict[str, np.ndarray]:
    with _file(provenance()[metric]["stored_as"]).open("rb") as f:
        return dict(np.load(f))
