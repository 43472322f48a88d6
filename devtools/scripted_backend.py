"""A scripted OpenAI-compatible backend for the judge service (judge tests and trainer tests that
run with a judge): it answers the scripted error codes first, then a fixed answer, or an answer
of the test's making (malformed ones), optionally dripped out a byte at a time (a backend too
slow to finish)."""

from __future__ import annotations

import asyncio
import json
import math

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from devtools.local_servers import ThreadedServer


class ScriptedBackend:
    """An OpenAI-compatible backend that first answers the scripted error codes, then succeeds.

    `answer` (also settable between requests) replaces the whole answer body, anything JSON can
    hold, malformed included;
    `drip_s` sends the answer one byte every drip_s seconds, after a few hundred bytes of
    leading whitespace (which JSON allows), so every read is quick but the answer takes long.
    """

    def __init__(self, failures: list[int] | None = None, content: str = "4", logprobs: dict | None = None,
                 answer: object = None, drip_s: float | None = None):
        self.failures = list(failures or [])
        self.answer = answer
        self.bodies: list[dict] = []
        self.cut = 0  # dripped answers whose reader hung up before the end
        app = FastAPI()

        @app.get("/v1/models")
        async def models():
            return {"object": "list", "data": [{"id": "judge-model"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            self.bodies.append(await request.json())
            if self.failures:
                return JSONResponse({"error": "scripted"}, status_code=self.failures.pop(0))
            body = self.answer if self.answer is not None else {"choices": [_choice(content, logprobs)]}
            if drip_s is None:
                return JSONResponse(body)
            return StreamingResponse(self._drip(b" " * 300 + json.dumps(body).encode(), drip_s), media_type="application/json")

        self.server = ThreadedServer(app)

    def __enter__(self):
        self.server.__enter__()
        return self

    def __exit__(self, *exc):
        self.server.__exit__(*exc)

    @property
    def url(self) -> str:
        return self.server.url + "/v1"

    async def _drip(self, data: bytes, every_s: float):
        sent = 0
        try:
            for sent in range(1, len(data) + 1):
                yield data[sent - 1 : sent]
                await asyncio.sleep(every_s)
        finally:
            if sent < len(data):  # the server stops a stream whose reader disconnected
                self.cut += 1


def _choice(content: str, logprobs: dict | None) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    if logprobs is not None:
        top = [{"token": t, "logprob": math.log(p)} for t, p in logprobs.items()]
        choice["logprobs"] = {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"], "top_logprobs": top}]}
    return choice


# fast-mode digit distribution: expected score (4 * 0.6 + 3 * 0.3) / 0.9, digit mass 0.9
FAST = {"4": 0.6, "3": 0.3, "x": 0.1}
