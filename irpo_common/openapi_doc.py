"""What a service's OpenAPI document declares beyond what FastAPI infers: the request bodies routes
read themselves (JSON, multipart, binary), their 4xx/503 answers and the bearer scheme, so that
client generators and schema fuzzers can use the document.

Routes that parse their own body take `**doc.route(...)`; `doc.install(app, auth=...)` then adds
the body models to the components and the bearer scheme to every /v1 operation.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_REF = "#/components/schemas/{model}"
_PROBLEM = {
    "title": "Problem",
    "type": "object",
    "properties": {"detail": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}},
    "required": ["detail"],
}
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


class ApiDoc:
    def __init__(self) -> None:
        self._models: dict[str, type[BaseModel]] = {}

    def schema(self, model: type[BaseModel]) -> dict:
        """A reference to `model` in the components (added at install)."""
        self._models[model.__name__] = model
        return {"$ref": _REF.format(model=model.__name__)}

    def route(self, content: dict[str, dict | type[BaseModel]], errors: tuple[int, ...] = (400, 408, 413, 415, 422)) -> dict:
        """Route keyword arguments declaring a required body (media type -> schema or model) and the
        route's error answers; 401 and 503 are declared on every /v1 route at install."""
        body = {mt: {"schema": self.schema(s) if isinstance(s, type) else s} for mt, s in content.items()}
        return {"openapi_extra": {"requestBody": {"required": True, "content": body}}, "responses": answers(*errors)}

    def install(self, app: FastAPI, *, auth: bool) -> None:
        def openapi() -> dict:
            if app.openapi_schema:
                return app.openapi_schema
            doc = get_openapi(title=app.title, version=app.version, description=f"{app.description}\n\n{OPEN_NOTE}".strip(), routes=app.routes)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for name, model in self._models.items():
                js = model.model_json_schema(ref_template=_REF)
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
    """`responses=` entries for these error codes, each with the Problem body (503 with Retry-After)."""
    out = {c: {"description": _REASONS[c], "content": {"application/json": {"schema": _PROBLEM}}} for c in codes}
    if 503 in out:
        out[503]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}
    return out
