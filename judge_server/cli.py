"""`judge-server`: run the judge service with uvicorn (settings: judge_server.settings)."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from .app import create_app
from .settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="judge-server",
        description="Vision-language judge of image restorations (IRPO's expert-preference reward). "
        "Settings come from --config and JUDGE_SERVER_* env vars; see judge_server/settings.py.",
    )
    parser.add_argument("--config", type=Path, help="YAML file of settings")
    parser.add_argument("--host", help="bind address (overrides settings; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (overrides settings; default 8200)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(args.config, overrides=overrides)
    except SettingsError as exc:
        parser.exit(2, f"judge-server: {exc}\n")
    print(f"judge-server: model {settings.model} at {settings.backend_url}, listening on {settings.host}:{settings.port}", flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
