"""The judge service: a FastAPI app in front of an OpenAI-compatible vision-language model.

Routes: POST /v1/judge (JSON, or multipart), POST /v1/judge/upload (multipart; documented apart from
the JSON route, as irpo_common.openapi_doc explains), POST /v1/judge/batch (JSON), GET /v1/info,
/healthz (process alive), /readyz (backend serves the configured model), /metrics (Prometheus).
With a token configured, the /v1 routes need `Authorization: Bearer <token>`; the probes, /metrics
and the API document (/docs, /openapi.json) stay open, as the document says. Client input is read
by irpo_common's strict JSON reader and guards, so it ends in a precise 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from irpo_common.http_guards import BodyLimit, accepted_media_type, answer_shared_errors, bearer_guard, count_requests, on_error, while_connected
from irpo_common.json_input import validate
from irpo_common.openapi_doc import ApiDoc, answers, operation_id
from irpo_common.problem import problem

from .backend import BackendError, BackendTimeout, BackendUnavailable, ChatBackend
from .judge import IMAGE_FIELDS, Judge, RequestError, prepare
from .metrics import JudgeMetrics
from .schemas import MULTIPART_SCHEMA, BatchRequest, BatchResult, JudgeOptions, JudgeRequest, JudgeResult
from .settings import JudgeSettings

_JSON, _MULTIPART = "application/json", "multipart/form-data"


def _backend_answers() -> dict:
    """The judge's own error answers, with the shared Problem body."""
    body = answers(400)[400]["content"]
    return {
        502: {"description": "The judge model's backend answered unusably (the message says how)", "content": body},
        504: {"description": "The backend did not answer within the request deadline (request_timeout_s)", "content": body},
    }


def create_app(settings: JudgeSettings) -> FastAPI:
    metrics = JudgeMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        backend = ChatBackend(settings)
        app.state.judge = Judge(settings, backend, metrics)
        try:
            yield
        finally:
            await backend.aclose()

    app = FastAPI(title="IRPO judge service", lifespan=lifespan, generate_unique_id_function=operation_id)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    count_requests(app, metrics.requests)  # after the other middleware: their 413/408 are counted too

    answer_shared_errors(app)  # as the reward service; a client gone has its backend calls cancelled
    on_error(app, RequestError, lambda e: problem(422, str(e)))

    def failed(kind: str, status: int):
        def respond(e: Exception) -> Response:
            metrics.backend_failures.labels(kind).inc()
            return problem(status, str(e))

        return respond

    on_error(app, BackendUnavailable, failed("unavailable", 503))
    on_error(app, BackendTimeout, failed("timeout", 504))
    on_error(app, BackendError, failed("bad_answer", 502))

    require_token = bearer_guard(settings.token)
    doc = ApiDoc()

    async def multipart_item(request: Request):
        form = await request.form(max_files=len(IMAGE_FIELDS), max_fields=len(IMAGE_FIELDS) + 2)
        unknown = set(form) - {*IMAGE_FIELDS, "task", "mode"}
        if unknown:
            raise HTTPException(422, f"unknown form field(s): {', '.join(sorted(unknown)[:5])[:200]}")
        images = {}
        for name in IMAGE_FIELDS:
            part = form.get(name)
            if part is not None and not isinstance(part, UploadFile):
                raise HTTPException(422, f"{name}: send it as a file upload")
            images[name] = await part.read() if part is not None else None
        options = {k: form[k] for k in ("task", "mode") if form.get(k)}
        if any(not isinstance(v, str) for v in options.values()):
            raise HTTPException(422, "task, mode: send them as text fields, not files")
        opts = JudgeOptions.model_validate(options)
        return images, opts.mode, opts.task

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", responses=answers(503))
    async def readyz(request: Request):
        served = await request.app.state.judge.backend.models()
        if settings.model not in served:
            raise HTTPException(503, f"backend serves {served[:20]}, not the configured model {settings.model!r}")
        return {"status": "ready", "model": settings.model, "backend_url": settings.backend_url}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/info", dependencies=[Depends(require_token)])
    async def info():
        return {
            "model": settings.model,
            "backend_url": settings.backend_url,
            "modes": ["fast", "reasoned", "iqa"],
            "reference_free": "fast mode with `restored` alone",
            "min_digit_mass": settings.min_digit_mass,
            "top_logprobs": settings.top_logprobs,
            "reasoned_max_tokens": settings.reasoned_max_tokens,
            "fast_assistant_prefix": settings.fast_assistant_prefix,
            "min_level_mass": settings.min_level_mass,
            "iqa_assistant_prefix": settings.iqa_assistant_prefix,
            "max_concurrency": settings.max_concurrency,
            "timeout_s": settings.timeout_s,
            "request_timeout_s": settings.request_timeout_s,
            "min_image_side": settings.min_image_side,
            "max_batch": settings.max_batch,
            "cache_size": settings.cache_size,
            "auth": settings.token is not None,
        }

    def judging(kind: str, body) -> dict:
        """Route arguments declaring the body and every error answer of a judging route."""
        declared = doc.route(kind, body, errors=(400, 408, 413, 415, 422))
        declared["responses"].update(_backend_answers())
        return {"dependencies": [Depends(require_token)], **declared}

    def judge_one(accepted: tuple[str, ...]):
        async def judge(request: Request):
            deadline = asyncio.get_running_loop().time() + settings.request_timeout_s
            kind = accepted_media_type(request, accepted)
            if kind == _MULTIPART:
                images, mode, task = await multipart_item(request)
            else:
                req = validate(JudgeRequest, await request.body())
                images, mode, task = {n: getattr(req, n) for n in IMAGE_FIELDS}, req.mode, req.task
            item = await run_in_threadpool(prepare, images, mode, task, settings)
            return await while_connected(request, request.app.state.judge.judge(item, deadline))

        return judge

    app.post("/v1/judge", name="judge", response_model=JudgeResult, **judging(_JSON, JudgeRequest),
             description="Judge one item sent as JSON (base64 images). Also takes the multipart form of "
                         "/v1/judge/upload, which is documented there.")(judge_one((_JSON, _MULTIPART)))
    app.post("/v1/judge/upload", name="judge_upload", response_model=JudgeResult, **judging(_MULTIPART, MULTIPART_SCHEMA),
             description="Judge one item sent as a multipart upload (image files; give each a file name).")(judge_one((_MULTIPART,)))

    @app.post("/v1/judge/batch", name="judge_batch", response_model=BatchResult, **judging(_JSON, BatchRequest))
    async def judge_batch(request: Request):
        """Judge a batch of items sent as JSON."""
        start = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + settings.request_timeout_s
        accepted_media_type(request, (_JSON,))
        batch = validate(BatchRequest, await request.body())
        if len(batch.items) > settings.max_batch:
            raise HTTPException(413, f"{len(batch.items)} items exceed the batch limit of {settings.max_batch}")

        def prepare_all():
            return [
                prepare({n: getattr(it, n) for n in IMAGE_FIELDS}, it.mode, it.task, settings, prefix=f"items[{i}].")
                for i, it in enumerate(batch.items)
            ]

        items = await run_in_threadpool(prepare_all)
        results = await while_connected(request, request.app.state.judge.judge_many(items, deadline))
        return BatchResult(results=results, latency_s=time.perf_counter() - start)

    doc.install(app, auth=settings.token is not None)
    return app
