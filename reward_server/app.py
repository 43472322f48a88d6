"""FastAPI application of the reward service: `create_app(settings, models=None)`.

The port opens at once: the models load in the background (/readyz answers 503 meanwhile) unless
they are given. Scoring requests pass the bearer guard, then admission control (reward_server.
admission), then the intake's checks (reward_server.intake), then the micro-batcher.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.concurrency import run_in_threadpool

from irpo_common.device import resolve_device
from irpo_common.http_guards import BodyLimit, accepted_media_type, answer_shared_errors, bearer_guard, count_requests, on_error
from irpo_common.json_input import validate
from irpo_common.openapi_doc import ApiDoc, answers, operation_id
from irpo_common.problem import problem
from irpo_common.reward_spec import GEN_TERMS
from irpo_common.tasks import TASKS
from reward_server import __version__
from reward_server import terms as table
from reward_server.admission import Admission, DeadlineExceeded
from reward_server.batching import ItemFailed, MicroBatcher, Overloaded
from reward_server.config import RewardSettings
from reward_server.intake import IMAGE_FIELDS, Intake
from reward_server.models import RewardModels, load_models
from reward_server.schemas import BatchRequest, BatchResponse, ItemResult, ScoreRequest
from reward_server.scorer import InvalidItemError, Scorer
from reward_server.wire import MEDIA_TYPE, WireError

log = logging.getLogger(__name__)

_JSON, _MULTIPART, _OCTETS = "application/json", "multipart/form-data", "application/octet-stream"
_IMAGE_PART = {"type": "string", "format": "binary", "description": "PNG or JPEG file"}
MULTIPART_SCHEMA = {
    "title": "ScoreUpload",
    "type": "object",
    "properties": {
        **dict.fromkeys(IMAGE_FIELDS, _IMAGE_PART),
        "task": {"type": "string", "enum": list(TASKS), "description": "Task name; absent (or empty) = none."},
        "weights": {"type": "string", "description": 'Weight overrides as JSON text, e.g. {"psnr": 0.3}; absent (or empty) = none.'},
        "judge": {"type": "string", "description": "R_judge in [0, 1] as text; absent (or empty) = none."},
    },
    "required": ["restored"],
    "additionalProperties": False,
}
BINARY_SCHEMA = {"type": "string", "format": "binary", "description": f"safetensors bytes (reward_server.wire), sent as {MEDIA_TYPE} or {_OCTETS}"}


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("reward_requests", "HTTP requests", ["path", "status"], registry=self.registry)
        self.items = Counter("reward_items_scored", "Items scored", registry=self.registry)
        self.dropped = Counter("reward_items_dropped", "Queued items dropped unscored: client gone, deadline passed or a batch-mate refused", registry=self.registry)
        self.batch_size = Histogram("reward_batch_size", "Items per device batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)
        self.batch_seconds = Histogram("reward_batch_seconds", "Seconds per device batch", registry=self.registry)
        self.ready = Gauge("reward_ready", "1 when the models are loaded", registry=self.registry)
        self.pending = Gauge("reward_requests_pending", "Scoring requests in flight (admitted)", registry=self.registry)
        self.queued = Gauge("reward_queue_items", "Items waiting for the device", registry=self.registry)

    def on_batch(self, n: int, seconds: float) -> None:
        self.items.inc(n)
        self.batch_size.observe(n)
        self.batch_seconds.observe(seconds)


def create_app(settings: RewardSettings, models: RewardModels | None = None) -> FastAPI:
    """The service; without `models` they are loaded in the background once the port is open."""
    prom = _Metrics()
    state: dict = {"models": models, "batcher": None, "error": None}
    admission = Admission(settings.max_pending_requests, settings.request_timeout_s, settings.max_queue_wait_s)
    prom.pending.set_function(lambda: admission.pending)
    prom.queued.set_function(lambda: state["batcher"].queued if state["batcher"] else 0)
    intake = Intake(settings)

    def on_batch(items: int, seconds: float) -> None:
        prom.on_batch(items, seconds)
        admission.observe_batch(items, seconds)

    async def bring_up() -> None:
        try:
            if state["models"] is None:
                state["models"] = await run_in_threadpool(load_models, settings, resolve_device(settings.device))
            batcher = MicroBatcher(Scorer(state["models"], settings), settings.micro_batch_size,
                                   settings.micro_batch_wait_ms / 1000, settings.max_queue_items, on_batch, prom.dropped.inc)
            await batcher.start()
        except Exception as exc:  # noqa: BLE001 - reported by /healthz and /readyz; the orchestrator restarts us
            log.exception("loading the reward models failed")
            state["error"] = f"loading the reward models failed: {type(exc).__name__}: {exc}"
            return
        state["batcher"] = batcher
        prom.ready.set(1)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        loading = asyncio.create_task(bring_up())
        yield
        prom.ready.set(0)
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        batcher, state["batcher"] = state["batcher"], None
        if batcher is not None:
            await batcher.stop()

    app = FastAPI(title="IRPO reward service", version=__version__, lifespan=lifespan, generate_unique_id_function=operation_id,
                  description="Scores restorations with the IRPO reward (reward_server/README.md).")
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    count_requests(app, prom.requests)

    def retry_after(seconds: float | None = None) -> dict[str, str]:
        return {"Retry-After": str(max(settings.retry_after_s, int(seconds or 0)))}

    answer_shared_errors(app)
    for bad in (InvalidItemError, WireError):
        on_error(app, bad, lambda e: problem(400, str(e)))
    on_error(app, Overloaded, lambda e: problem(503, f"overloaded: {e}; retry later", retry_after(e.retry_after_s)))
    on_error(app, DeadlineExceeded, lambda e: problem(503, str(e), retry_after()))
    on_error(app, ItemFailed, lambda e: problem(500, str(e)))

    require_token = bearer_guard(settings.token)
    doc = ApiDoc()

    def batcher() -> MicroBatcher:
        if state["batcher"] is None:
            raise HTTPException(503, state["error"] or "models are loading", headers={"Retry-After": str(settings.retry_after_s)})
        return state["batcher"]

    @app.get("/healthz", responses=answers(503))
    async def healthz():
        if state["error"]:
            return problem(503, state["error"])
        return {"status": "ok"}

    @app.get("/readyz", responses=answers(503))
    async def readyz():
        if state["batcher"] is None:
            return JSONResponse({"ready": False, "detail": state["error"] or "models are loading"}, status_code=503)
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
            "piqe_range": settings.piqe_range,
            "hps_range": settings.hps_range,
            "models": m.info() if m else None,
            "random_weights": m.random_terms() if m else None,
            "unavailable_terms": table.unavailable(settings),
            "precision": m.precision if m else None,
            "convention": "RGB in [0,1] (values outside are refused); PSNR data_range 1; SSIM skimage default (7x7 uniform, sample covariance)",
            "limits": {
                "max_pixels": settings.max_pixels,
                "min_side": settings.min_side,
                "min_side_by_term": table.min_sides(settings),
                "min_side_for_weights": table.min_side_for(settings.weights, settings),
                "max_body_bytes": settings.max_body_bytes,
                "max_batch_items": settings.max_batch_items,
                "max_request_pixels": settings.max_request_pixels,
                "max_pending_requests": settings.max_pending_requests,
                "max_queue_items": settings.max_queue_items,
                "max_queue_wait_s": settings.max_queue_wait_s,
                "request_timeout_s": settings.request_timeout_s,
                "body_timeout_s": settings.body_timeout_s,
            },
            "binary_media_type": MEDIA_TYPE,
        }

    async def scored(request: Request, read):
        """Admit the request, read its items with `read()` (a coroutine), score them within the deadline."""
        b = batcher()
        async with admission.slot() as ticket:
            items = await read()
            admission.read(ticket, len(items))
            return await admission.watch(request, ticket, b.submit(items))

    # Each body kind is documented on its own operation (irpo_common.openapi_doc says why); the JSON
    # routes also take the other kinds, so curl -F and the trainer's binary batches need no new path.
    def score_one(accepted: tuple[str, ...]):
        async def score(request: Request):
            kind = accepted_media_type(request, accepted)

            async def read():
                if kind == _JSON:
                    req = validate(ScoreRequest, await request.body())
                    return await run_in_threadpool(intake.json_items, [req], [""])
                raw, opts = await intake.multipart_form(request)
                return [await run_in_threadpool(intake.multipart_item, raw, opts)]

            [result] = await scored(request, read)
            return Response(result.model_dump_json(), media_type="application/json")

        return score

    single = {"response_model": ItemResult, "dependencies": [Depends(require_token)]}
    app.post("/v1/score", name="score", **single, **doc.route(_JSON, ScoreRequest),
             description="Score one item sent as JSON (base64 images). Also takes the multipart form of "
                         "/v1/score/upload, which is documented there.")(score_one((_JSON, _MULTIPART)))
    app.post("/v1/score/upload", name="score_upload", **single, **doc.route(_MULTIPART, MULTIPART_SCHEMA),
             description="Score one item sent as a multipart upload (image files; give each a file name).")(score_one((_MULTIPART,)))

    def score_many(accepted: tuple[str, ...]):
        async def score_batch(request: Request):
            kind = accepted_media_type(request, accepted)

            async def read():
                body = await request.body()
                if kind != _JSON:
                    return await run_in_threadpool(intake.binary_items, body)
                req = validate(BatchRequest, body)
                if len(req.items) > settings.max_batch_items:
                    raise InvalidItemError(f"batch of {len(req.items)} items; allowed 1..{settings.max_batch_items}")
                return await run_in_threadpool(intake.json_items, req.items, [f"items[{i}]." for i in range(len(req.items))])

            results = await scored(request, read)
            return Response(BatchResponse(results=results).model_dump_json(), media_type="application/json")

        return score_batch

    batch = {"response_model": BatchResponse, "dependencies": [Depends(require_token)]}
    app.post("/v1/score/batch", name="score_batch", **batch, **doc.route(_JSON, BatchRequest),
             description=f"Score a batch sent as JSON. Also takes the safetensors body of /v1/score/batch/safetensors "
                         f"({MEDIA_TYPE}), which is documented there.")(score_many((_JSON, MEDIA_TYPE, _OCTETS)))
    app.post("/v1/score/batch/safetensors", name="score_batch_safetensors", **batch, **doc.route(_OCTETS, BINARY_SCHEMA),
             description="Score a batch sent in the binary format of reward_server/wire.py (what the trainer sends).")(
        score_many((MEDIA_TYPE, _OCTETS)))

    doc.install(app, auth=settings.token is not None)
    return app
