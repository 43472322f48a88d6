"""A scripted OpenAI-compatible backend for the judge service (judge tests and trainer tests that
run with a judge): it answers the scripted error codes first, then a fixed answer."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from devtools.local_servers import ThreadedServer


class ScriptedBackend:
    """An OpenAI-compatible backend that first answers the scripted error codes, then succeeds."""

    def __init__(self, failures: list[int] | None = None, content: str = "4", logprobs: dict | None = None):
        self.failures = list(failures or [])
        self.bodies: list[dict] = []
        app = FastAPI()

        @app.get("/v1/models")
        async def models():
            return {"object": "list", "data": [{"id": "judge-model"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            self.bodies.append(await request.json())
            if self.failures:
                return JSONResponse({"error": "scripted"}, status_code=self.failures.pop(0))
            choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            if logprobs is not None:
                top = [{"token": t, "logprob": math.log(p)} for t, p in logprobs.items()]
                choice["logprobs"] = {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"], "top_logprobs": top}]}
            return {"choices": [choice]}

        self.server = ThreadedServer(app)

    def __enter__(self):
        self.server.__enter__()
        return self

    def __exit__(self, *exc):
        self.server.__exit__(*exc)

    @property
    def url(self) -> str:
        return self.server.url + "/v1"


# fast-mode digit distribution: expected score (4 * 0.6 + 3 * 0.3) / 0.9, digit mass 0.9
FAST = {"4": 0.6, "3": 0.3, "x": 0.1}
