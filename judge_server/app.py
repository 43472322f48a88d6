"""The judge service: a FastAPI app in front of an OpenAI-compatible vision-language model.

Routes: POST /v1/judge (JSON or multipart), POST /v1/judge/batch (JSON), GET /v1/info,
/healthz (process alive), /readyz (backend serves the configured model), /metrics (Prometheus).
With a token configured, the /v1 routes need `Authorization: Bearer <token>`; the probes and
/metrics stay open for the orchestrator.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from irpo_common.http_guards import BodyLimit, bearer_guard, count_requests
from irpo_common.imaging import ImageError

from .backend import BackendError, BackendTimeout, BackendUnavailable, ChatBackend
from .judge import IMAGE_FIELDS, Judge, RequestError, prepare
from .metrics import JudgeMetrics
from .schemas import BatchRequest, BatchResult, JudgeOptions, JudgeRequest, JudgeResult
from .settings import JudgeSettings


class _HTTPProblem(Exception):
    def __init__(self, status: int, detail: str | list):
        self.status, self.detail = status, detail


def _invalid(exc: ValidationError) -> _HTTPProblem:
    # without the offending input: it may be megabytes of base64
    return _HTTPProblem(422, exc.errors(include_url=False, include_context=False, include_input=False))


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

    app = FastAPI(title="IRPO judge service", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    def problem(status: int, detail) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": detail})

    app.add_exception_handler(_HTTPProblem, lambda r, e: problem(e.status, e.detail))
    app.add_exception_handler(ImageError, lambda r, e: problem(400, str(e)))  # as the reward service
    app.add_exception_handler(RequestError, lambda r, e: problem(422, str(e)))

    def outage(r, e: BackendUnavailable) -> JSONResponse:
        metrics.backend_failures.labels("unavailable").inc()
        return problem(503, str(e))

    def bad_backend(r, e: BackendError) -> JSONResponse:
        metrics.backend_failures.labels("bad_answer").inc()
        return problem(502, str(e))

    def too_slow(r, e: BackendTimeout) -> JSONResponse:
        metrics.backend_failures.labels("timeout").inc()
        return problem(504, str(e))

    app.add_exception_handler(BackendUnavailable, outage)
    app.add_exception_handler(BackendTimeout, too_slow)
    app.add_exception_handler(BackendError, bad_backend)

    count_requests(app, metrics.requests)

    require_token = bearer_guard(settings.token)

    async def json_body(request: Request, model):
        try:
            payload = await request.json()
        except ValueError:
            raise _HTTPProblem(400, "body is not valid JSON") from None
        except RecursionError:
            raise _HTTPProblem(400, "body nests JSON too deeply") from None
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            raise _invalid(exc) from None

    async def multipart_item(request: Request):
        form = await request.form()
        unknown = set(form) - {*IMAGE_FIELDS, "task", "mode"}
        if unknown:
            raise _HTTPProblem(422, f"unknown form field(s): {', '.join(sorted(unknown))}")
        images = {}
        for name in IMAGE_FIELDS:
            part = form.get(name)
            if part is not None and not isinstance(part, UploadFile):
                raise _HTTPProblem(422, f"{name}: send it as a file upload")
            images[name] = await part.read() if part is not None else None
        try:
            options = JudgeOptions.model_validate({k: form[k] for k in ("task", "mode") if form.get(k)})
        except ValidationError as exc:
            raise _invalid(exc) from None
        return images, options.mode, options.task

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request):
        served = await request.app.state.judge.backend.models()
        if settings.model not in served:
            raise _HTTPProblem(503, f"backend serves {served}, not the configured model {settings.model!r}")
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

    @app.post("/v1/judge", response_model=JudgeResult, dependencies=[Depends(require_token)])
    async def judge_one(request: Request):
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            images, mode, task = await multipart_item(request)
        else:
            req = await json_body(request, JudgeRequest)
            images, mode, task = {n: getattr(req, n) for n in IMAGE_FIELDS}, req.mode, req.task
        deadline = asyncio.get_running_loop().time() + settings.request_timeout_s
        item = await run_in_threadpool(prepare, images, mode, task, settings)
        return await request.app.state.judge.judge(item, deadline)

    @app.post("/v1/judge/batch", response_model=BatchResult, dependencies=[Depends(require_token)])
    async def judge_batch(request: Request):
        start = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + settings.request_timeout_s
        batch = await json_body(request, BatchRequest)
        if len(batch.items) > settings.max_batch:
            raise _HTTPProblem(413, f"{len(batch.items)} items exceed the batch limit of {settings.max_batch}")

        def prepare_all():
            return [
                prepare({n: getattr(it, n) for n in IMAGE_FIELDS}, it.mode, it.task, settings, prefix=f"items[{i}].")
                for i, it in enumerate(batch.items)
            ]

        items = await run_in_threadpool(prepare_all)
        results = await request.app.state.judge.judge_many(items, deadline)
        return BatchResult(results=results, latency_s=time.perf_counter() - start)

    return app
