"""What a service's OpenAPI document declares beyond what FastAPI infers: the request bodies routes
read themselves (JSON, multipart, binary), their 4xx/503 answers with the named Problem body, the
bearer scheme and short operation ids, so that client generators and schema fuzzers can use it.

Each documented operation declares ONE body media type: openapi-python-client 0.29 writes a module
that fails to import for an operation with two (JSON and multipart), so a second way of sending the
same thing gets its own route (e.g. /v1/score/upload for multipart), while the JSON route still
accepts the other for curl users (its description says so).

Routes that parse their own body take `**doc.route(...)`; `doc.install(app, auth=...)` then adds
the body and error models to the components and the bearer scheme to every /v1 operation. Create
the app with `generate_unique_id_function=operation_id`.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from irpo_common.problem import Problem

_REF = "#/components/schemas/{model}"
_PROBLEM = {"$ref": _REF.format(model=Problem.__name__)}
_REASONS = {
    400: "Unusable input (the message names the field and the reason)",
    401: "Missing or wrong bearer token",
    408: "The body did not arrive in time",
    413: "Body or batch over the limit",
    415: "Unsupported content type",
    422: "Body does not match the schema",
    503: "Not ready, or overloaded: retry after the Retry-After header's seconds",
}
OPEN_NOTE = (
    "/healthz, /readyz, /metrics, /docs and /openapi.json are open by design (probes, scraping and this "
    "document, none of which carries data or secrets); with a token configured every /v1 route needs "
    "`Authorization: Bearer <token>`."
)


def operation_id(route: APIRoute) -> str:
    """The operation id is the route's name (score, score_upload, ...): generated clients name their
    functions after it, instead of FastAPI's default `score_v1_score_post`."""
    return route.name


class ApiDoc:
    def __init__(self) -> None:
        self._schemas: dict[str, type[BaseModel] | dict] = {Problem.__name__: Problem}

    def schema(self, body: type[BaseModel] | dict) -> dict:
        """A reference to a model, or to a JSON schema with a title, in the components (added at
        install), so that generated clients name it; a schema without a title stays inline."""
        if isinstance(body, type):
            self._schemas[body.__name__] = body
            return {"$ref": _REF.format(model=body.__name__)}
        if "title" not in body:
            return body
        self._schemas[body["title"]] = body
        return {"$ref": _REF.format(model=body["title"])}

    def route(self, media_type: str, body: type[BaseModel] | dict, errors: tuple[int, ...] = (400, 408, 413, 415, 422)) -> dict:
        """Route keyword arguments declaring a required body of one media type (see the module
        docstring) and the route's error answers; 401 and 503 are declared on every /v1 route at install."""
        content = {media_type: {"schema": self.schema(body)}}
        return {"openapi_extra": {"requestBody": {"required": True, "content": content}}, "responses": answers(*errors)}

    def install(self, app: FastAPI, *, auth: bool) -> None:
        def openapi() -> dict:
            if app.openapi_schema:
                return app.openapi_schema
            doc = get_openapi(title=app.title, version=app.version, description=f"{app.description}\n\n{OPEN_NOTE}".strip(), routes=app.routes)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for name, body in self._schemas.items():
                js = body.model_json_schema(ref_template=_REF) if isinstance(body, type) else dict(body)
                schemas.update(js.pop("$defs", {}))
                schemas[name] = js
            if auth:
                doc["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
            for path, ops in doc.get("paths", {}).items():
                if not path.startswith("/v1/"):
                    continue
                for op in ops.values():
                    extra = answers(401, 503) if auth else answers(503)
                    op.setdefault("responses", {}).update({str(c): r for c, r in extra.items()})
                    if auth:
                        op["security"] = [{"bearerAuth": []}]
            app.openapi_schema = doc
            return doc

        app.openapi = openapi


def answers(*codes: int) -> dict:
    """`responses=` entries for these error codes, each with the Problem body (503 with Retry-After);
    the Problem model is in the components of every document that ApiDoc installs."""
    out = {c: {"description": _REASONS[c], "content": {"application/json": {"schema": _PROBLEM}}} for c in codes}
    if 503 in out:
        out[503]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}
    return out
