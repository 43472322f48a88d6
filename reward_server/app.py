"""FastAPI application of the reward service: `create_app(settings, models=None)`."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from irpo_common.device import resolve_device
from irpo_common.http_guards import BodyLimit, bearer_guard, count_requests
from irpo_common.imaging import ImageError, decode_base64_image, decode_image
from irpo_common.reward_spec import GEN_TERMS
from irpo_common.tasks import TASKS
from reward_server import __version__
from reward_server.batching import MicroBatcher
from reward_server.config import RewardSettings
from reward_server.models import RewardModels, load_models
from reward_server.schemas import BatchRequest, BatchResponse, ItemOptions, ItemResult, ScoreRequest
from reward_server.scorer import InvalidItemError, ScoreItem, Scorer, make_item
from reward_server.wire import MEDIA_TYPE, WireError, decode_batch

IMAGE_FIELDS = ("restored", "reference", "degraded")


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("reward_requests", "HTTP requests", ["path", "status"], registry=self.registry)
        self.items = Counter("reward_items_scored", "Items scored", registry=self.registry)
        self.batch_size = Histogram("reward_batch_size", "Items per device batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)
        self.batch_seconds = Histogram("reward_batch_seconds", "Seconds per device batch", registry=self.registry)
        self.ready = Gauge("reward_ready", "1 when the models are loaded", registry=self.registry)

    def on_batch(self, n: int, seconds: float) -> None:
        self.items.inc(n)
        self.batch_size.observe(n)
        self.batch_seconds.observe(seconds)


def _validation_detail(exc: ValidationError) -> list[dict]:
    return json.loads(exc.json(include_url=False))


def create_app(settings: RewardSettings, models: RewardModels | None = None) -> FastAPI:
    """The service; models are loaded at startup unless given (the CLI loads them first to fail fast)."""
    prom = _Metrics()
    state: dict = {"models": models, "batcher": None}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if state["models"] is None:
            state["models"] = await run_in_threadpool(load_models, settings, resolve_device(settings.device))
        batcher = MicroBatcher(Scorer(state["models"], settings), settings.micro_batch_size, settings.micro_batch_wait_ms / 1000, prom.on_batch)
        await batcher.start()
        state["batcher"] = batcher
        prom.ready.set(1)
        yield
        prom.ready.set(0)
        state["batcher"] = None
        await batcher.stop()

    app = FastAPI(title="IRPO reward service", version=__version__, lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    count_requests(app, prom.requests)

    @app.exception_handler(ImageError)
    @app.exception_handler(InvalidItemError)
    @app.exception_handler(WireError)
    async def _bad_input(_: Request, exc: ValueError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(ValidationError)
    async def _invalid(_: Request, exc: ValidationError):
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    require_token = bearer_guard(settings.token)

    def batcher() -> MicroBatcher:
        if state["batcher"] is None:
            raise HTTPException(503, "models are not loaded yet")
        return state["batcher"]

    def to_item(images: dict, opts: ItemOptions, label: str = "") -> ScoreItem:
        try:
            weights = settings.weights.override(opts.weights)
        except (ValueError, ValidationError) as exc:
            raise InvalidItemError(f"{label}weights: {exc}") from None
        return make_item(
            images["restored"], images.get("reference"), images.get("degraded"),
            task=opts.task, weights=weights, judge=opts.judge, settings=settings, label=label,
        )

    def decode_json_item(req: ScoreRequest, label: str = "") -> ScoreItem:
        images = {}
        for f in IMAGE_FIELDS:
            text = getattr(req, f)
            if text is not None:
                arr = decode_base64_image(text, field=f"{label}{f}", max_pixels=settings.max_pixels)
                images[f] = torch.from_numpy(arr).permute(2, 0, 1)
        return to_item(images, req, label)

    async def read_multipart(request: Request) -> ScoreItem:
        form = await request.form(max_files=len(IMAGE_FIELDS), max_fields=len(IMAGE_FIELDS) + 3)
        raw_images, options = {}, {}
        for key, value in form.multi_items():
            if key in IMAGE_FIELDS:
                raw_images[key] = await value.read() if isinstance(value, UploadFile) else value
            elif isinstance(value, str):
                options[key] = value
            else:
                raise InvalidItemError(f"{key}: unexpected file upload; files go in {list(IMAGE_FIELDS)}")
        if "restored" not in raw_images:
            raise InvalidItemError("restored: required (multipart field `restored`)")
        if "weights" in options:
            try:
                options["weights"] = json.loads(options["weights"])
            except json.JSONDecodeError:
                raise InvalidItemError("weights: not valid JSON (send e.g. weights='{\"psnr\": 0.3}')") from None
        options = {k: (None if v == "" else v) for k, v in options.items()}
        opts = ItemOptions.model_validate(options)

        def decode() -> ScoreItem:
            images = {}
            for f, data in raw_images.items():
                if isinstance(data, str):
                    arr = decode_base64_image(data, field=f, max_pixels=settings.max_pixels)
                else:
                    arr = decode_image(data, field=f, max_pixels=settings.max_pixels)
                images[f] = torch.from_numpy(arr).permute(2, 0, 1)
            return to_item(images, opts)

        return await run_in_threadpool(decode)

    def media_type(request: Request) -> str:
        return request.headers.get("content-type", "").split(";")[0].strip().lower()

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if state["batcher"] is None:
            return JSONResponse({"ready": False}, status_code=503)
        return {"ready": True}

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(prom.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/info", dependencies=[Depends(require_token)])
    async def info():
        m: RewardModels | None = state["models"]
        return {
            "version": __version__,
            "ready": state["batcher"] is not None,
            "device": str(m.device) if m else None,
            "terms": {"generic": list(GEN_TERMS), "task": list(TASKS), "caller_supplied": ["judge"]},
            "weights": settings.weights.model_dump(),
            "psnr_range_db": settings.psnr_range_db,
            "aesthetic_range": settings.aesthetic_range,
            "brisque_range": settings.brisque_range,
            "niqe_range": settings.niqe_range,
            "models": m.info() if m else None,
            "random_weights": m.random_terms() if m else None,
            "precision": m.precision if m else None,
            "convention": "RGB in [0,1] clamped; PSNR data_range 1; SSIM skimage default (7x7 uniform, sample covariance)",
            "limits": {
                "max_pixels": settings.max_pixels,
                "min_side": settings.min_side,
                "max_body_bytes": settings.max_body_bytes,
                "max_batch_items": settings.max_batch_items,
            },
            "binary_media_type": MEDIA_TYPE,
        }

    @app.post("/v1/score", response_model=ItemResult, dependencies=[Depends(require_token)])
    async def score(request: Request):
        kind = media_type(request)
        if kind == "application/json":
            req = ScoreRequest.model_validate_json(await request.body())
            item = await run_in_threadpool(decode_json_item, req)
        elif kind == "multipart/form-data":
            item = await read_multipart(request)
        else:
            raise HTTPException(415, f"content type {kind or 'none'!r}: send application/json or multipart/form-data")
        [result] = await batcher().submit([item])
        return Response(result.model_dump_json(), media_type="application/json")

    @app.post("/v1/score/batch", response_model=BatchResponse, dependencies=[Depends(require_token)])
    async def score_batch(request: Request):
        kind = media_type(request)
        body = await request.body()
        if kind == "application/json":
            req = BatchRequest.model_validate_json(body)
            if len(req.items) > settings.max_batch_items:
                raise InvalidItemError(f"batch of {len(req.items)} items; allowed 1..{settings.max_batch_items}")

            def decode_all() -> list[ScoreItem]:
                return [decode_json_item(r, f"items[{i}].") for i, r in enumerate(req.items)]

            items = await run_in_threadpool(decode_all)
        elif kind in (MEDIA_TYPE, "application/octet-stream"):

            def decode_binary() -> list[ScoreItem]:
                tensors, options = decode_batch(body, max_items=settings.max_batch_items, max_pixels=settings.max_pixels)
                items = []
                for i, raw in enumerate(options):
                    label = f"items[{i}]."
                    try:
                        opts = ItemOptions.model_validate(raw)
                    except ValidationError as exc:
                        raise InvalidItemError(f"{label}{exc}") from None
                    items.append(to_item({k: t[i] for k, t in tensors.items()}, opts, label))
                return items

            items = await run_in_threadpool(decode_binary)
        else:
            raise HTTPException(415, f"content type {kind or 'none'!r}: send application/json or {MEDIA_TYPE}")
        results = await batcher().submit(items)
        return Response(BatchResponse(results=results).model_dump_json(), media_type="application/json")

    return app
