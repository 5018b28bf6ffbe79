"""Schemathesis against the real service: requests generated from its OpenAPI schema (valid
and invalid bodies, paths and parameters) never get a server error."""

from __future__ import annotations

import pytest
from serving import running

from neartext.serve import ServeSettings

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

EXAMPLES = 25  # per operation; the map routes compute a projection per call


@pytest.mark.slow
def test_no_generated_request_gets_a_server_error(demo_copy):
    from hypothesis import HealthCheck, given, settings

    with running(ServeSettings.from_args([str(demo_copy)], api_key="k", max_texts=16)) as c:
        schema = schemathesis.openapi.from_url(c.base + "/openapi.json")
        failures: list[str] = []
        statuses: dict[int, int] = {}
        operations = [r.ok() for r in schema.get_all_operations()]
        assert len(operations) >= 15
        from schemathesis.generation import GenerationMode

        def fuzz(op, mode) -> None:
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def probe(case) -> None:
                if mode == GenerationMode.POSITIVE and (case.path_parameters or {}).get("name"):
                    case.path_parameters["name"] = "feedback"  # past the 404: the handlers
                resp = case.call(headers={"Authorization": "Bearer k"}, timeout=120)
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                if resp.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} {case.body!r:.200} -> "
                                    f"{resp.status_code} {resp.text[:200]}")

            try:
                probe()
            except hypothesis.errors.Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # nothing in it to make invalid

        for op in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz(op, mode)
        assert not failures, "\n".join(failures[:10])
        # the generator reached the handlers (2xx) and the checks (4xx) alike
        assert sum(statuses.values()) > 10 * len(operations), statuses
        assert sum(n for s, n in statuses.items() if s < 300) > 3 * len(operations), statuses
        assert statuses.get(422, 0) > 3 * len(operations), statuses
