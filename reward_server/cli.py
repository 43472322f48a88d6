"""`reward-server`: check the settings and the model files, open the port, load the models in the background."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn
from pydantic import ValidationError

from irpo_common.device import resolve_device
from reward_server.app import create_app
from reward_server.config import load_settings
from reward_server.models import WeightsMissingError, find_weights, precisions_for


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="reward-server", description="Serve the IRPO reward over REST.")
    p.add_argument("--config", help="YAML settings file (see reward_server/config.py); env REWARD_SERVER_* overrides it")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8100)")
    p.add_argument("--device", help="auto (default: cuda when available, else cpu), cpu, cuda, cuda:N")
    p.add_argument("--weights-dir", help="folder prepared by reward-server-weights")
    p.add_argument("--random-weights", action="store_true", default=None,
                   help="DEVELOPMENT ONLY: build missing models with random weights (responses say which terms)")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {
        k: v for k, v in (("host", args.host), ("port", args.port), ("device", args.device),
                          ("weights_dir", args.weights_dir), ("random_weights", args.random_weights)) if v is not None
    }
    try:
        settings = load_settings(args.config, **overrides)
        device = resolve_device(settings.device)
        missing = [name for name, hit in find_weights(settings).items() if hit is None]
        # checked before the port opens: a precision the device cannot run stops the service at once
        precision = precisions_for(settings, device)
    except (FileNotFoundError, ValidationError, WeightsMissingError, ValueError) as exc:
        sys.exit(f"reward-server: cannot start: {exc}")
    if missing:
        print(f"reward-server: RANDOM WEIGHTS (development flag) for: {', '.join(missing)}; "
              f"CLIP architecture {settings.clip_model}", file=sys.stderr, flush=True)
    print(f"reward-server: device {device}, precision {precision}, serving on http://{settings.host}:{settings.port} "
          "(models load in the background; /readyz answers 200 once they are)", file=sys.stderr, flush=True)
    # the port opens first, so probes see "loading" (503 on /readyz) rather than a refused connection
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level.lower())

if __name__ == "__main__":
    main()
