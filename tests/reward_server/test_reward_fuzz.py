"""Schema fuzz of the reward service driven by its own /openapi.json (devtools.schema_fuzz): cases that
fit the declared bodies and cases that do not, on every operation, with the bearer token. Bounded to
about a minute on 2 busy cores; the service must answer all of them below 500."""

from __future__ import annotations

from reward_support import TOKEN

from devtools.schema_fuzz import fuzz


def test_schema_fuzz_finds_no_server_error(server):
    report = fuzz(server, token=TOKEN, examples=60)
    assert not report.failures, "\n\n".join(report.failures[:5])
    for op in ("POST /v1/score", "POST /v1/score/batch"):  # the fuzz reached the scoring routes' checks
        statuses = report.statuses[op]
        assert statuses[400] and statuses[422], report.summary()
    assert report.calls > 300, report.summary()
