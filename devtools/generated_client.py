"""Generate a Python client of a running service with openapi-python-client, as the README tells a
user to (the generator reads the live /openapi.json and formats its output with ruff, which runs
offline), then import every module of it. Used by the services' generated-client tests."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from openapi_python_client import generate
from openapi_python_client.config import Config, ConfigFile, MetaType


@dataclass
class GeneratedClient:
    package: ModuleType | None
    warnings: list[str] = field(default_factory=list)  # every warning or error of the generator, "header: detail"
    broken: dict[str, str] = field(default_factory=dict)  # module -> why it failed to import

    def module(self, name: str) -> ModuleType:
        return importlib.import_module(f"{self.package.__name__}.{name}")

    def client(self, base_url: str, token: str | None = None):
        """The generated client class for `base_url`: AuthenticatedClient with a token, else Client."""
        if token is None:
            return self.package.Client(base_url=base_url, timeout=60, raise_on_unexpected_status=True)
        return self.package.AuthenticatedClient(base_url=base_url, token=token, timeout=60, raise_on_unexpected_status=True)

    def problem(self, response, status: int):
        """The parsed body of a `sync_detailed` error answer, checked to have `status` and the generated Problem type."""
        assert response.status_code == status and isinstance(response.parsed, self.module("models").Problem), response
        return response.parsed


def generate_client(base_url: str, folder: Path, package: str) -> GeneratedClient:
    """Generate package `package` under `folder` from `base_url`/openapi.json and import all of it."""
    # http_timeout: the generator's 5 s default for reading the document is short on a loaded test machine
    config = Config.from_sources(ConfigFile(package_name_override=package, http_timeout=60), MetaType.NONE, f"{base_url}/openapi.json",
                                 "utf-8", overwrite=True, output_path=folder / package)
    # the generator's ruff post-hooks look `ruff` up on PATH: the one installed beside it, as in a user's venv
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{path}"
    try:
        errors = generate(config=config)
    finally:
        os.environ["PATH"] = path
    out = GeneratedClient(None, [f"{e.header}: {e.detail}" for e in errors])
    if not (folder / package / "__init__.py").exists():
        return out
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    out.package = importlib.import_module(package)
    for info in pkgutil.walk_packages(out.package.__path__, f"{package}.", onerror=lambda name: out.broken.setdefault(name, "package import failed")):
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # noqa: BLE001 - reported by name: the test lists every module that fails
            out.broken[info.name] = f"{type(exc).__name__}: {exc}"
    return out
