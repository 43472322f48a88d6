"""A bounded schema fuzz of a running service, driven by its own /openapi.json (schemathesis).

For each operation of the document, `examples` cases that fit the schema and `examples` that do not
(schemathesis' positive and negative modes) are sent with the bearer token; every answer's status is
recorded and every answer >= 500 (or a broken connection) kept with a way to reproduce it. Used by the
services' fuzz tests: a service that declares its bodies, 4xx answers and bearer scheme must answer
all of it with < 500.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, strategies as st
from schemathesis import GenerationMode


@dataclass
class FuzzReport:
    statuses: dict[str, Counter] = field(default_factory=dict)  # "METHOD /path" -> status -> count
    failures: list[str] = field(default_factory=list)  # answers >= 500 and broken connections, reproducible

    @property
    def calls(self) -> int:
        return sum(sum(c.values()) for c in self.statuses.values())

    def summary(self) -> str:
        return "; ".join(f"{op}: {dict(sorted(c.items(), key=str))}" for op, c in sorted(self.statuses.items()))


@schemathesis.serializer("application/vnd.safetensors", "application/octet-stream")
def _raw_bytes(ctx, value) -> dict:
    """Opaque binary bodies go on the wire as the bytes generated for them."""
    if hasattr(value, "data"):
        value = value.data
    return {"data": value if isinstance(value, bytes) else str(value).encode()}


def fuzz(base_url: str, *, token: str | None = None, examples: int = 25, seed: int = 0, timeout_s: float = 30.0) -> FuzzReport:
    """Fuzz every operation of the service at `base_url`; the report lists what answered >= 500."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=headers, timeout=timeout_s)
    report = FuzzReport()
    session = requests.Session()
    for result in schema.get_all_operations():
        op = result.ok()
        counts = report.statuses.setdefault(op.label, Counter())
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run_mode(op, mode, report, counts, lambda case: case.call(base_url=base_url, headers=headers, session=session,
                                                                       timeout=timeout_s), headers, examples, seed)
    session.close()
    return report


def _run_mode(op, mode, report: FuzzReport, counts: Counter, call, headers: dict, examples: int, seed: int) -> None:
    @hypothesis.settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                         suppress_health_check=list(HealthCheck), print_blob=False)
    @hypothesis.seed(seed)
    @hypothesis.given(data=st.data())
    def send(data):
        case = data.draw(op.as_strategy(generation_mode=mode))
        try:
            resp = call(case)
        except requests.RequestException as exc:
            report.failures.append(f"{op.label} [{mode}]: {type(exc).__name__}: {exc}\n{case.as_curl_command(headers)[:2000]}")
            counts["connection error"] += 1
            return
        counts[resp.status_code] += 1
        if resp.status_code >= 500:
            report.failures.append(f"{op.label} [{mode}]: {resp.status_code} {resp.text[:300]}\n{case.as_curl_command(headers)[:2000]}")

    try:
        send()
    except hypothesis.errors.Unsatisfiable:  # no case of this mode exists (a route without inputs has no negative one)
        counts[f"no {mode} case"] += 1
