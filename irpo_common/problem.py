"""The one error body of both services: `{"detail": <text or a list of ErrorItem>}`.

Every 4xx/5xx the services or their shared guards send (validation errors, bad JSON, unusable
images, the token guard, 408/413 of the body limit, 503 sheds, 499, the last-resort 500) has this
shape, and the OpenAPI document names it (`Problem`, `ErrorItem`) so client generators can type it.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class ErrorItem(BaseModel):
    """One reason a body does not match its schema (never the offending input itself)."""

    loc: list[str | int] = Field(description="Path to the field: names and list indexes, e.g. [\"items\", 0, \"task\"]; "
                                             "empty for the body as a whole.")
    msg: str = Field(description="What is wrong, at most 200 characters.")
    type: str = Field(description="Error kind, e.g. missing, literal_error, extra_forbidden; 'truncated' for the "
                                  "closing item that counts the errors not shown (at most 10 are).")


class Problem(BaseModel):
    """An error answer: `detail` is a sentence, or for a body that does not match its schema (422) a
    list of ErrorItem."""

    detail: str | list[ErrorItem] = Field(description="Why the request failed.")


def problem(status: int, detail: str | list[dict], headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A Problem response (`detail` a sentence or validation_detail's list)."""
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)
