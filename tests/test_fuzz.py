"""API fuzzing: schemathesis drives every documented route with a key holding every role.

Fixed seed and a bounded number of examples per route keep CI within minutes. Checks: no 5xx,
and every response matches its documented status code, content type and schema.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
import schemathesis.checks as sc
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.core.failures import FailureGroup

from guard.auth.service import create_key
from guard.db import transaction
from guard.policy import ROLE_NAMES
from guard.runtime import Runtime
from tests.conftest import TenantKeys

pytestmark = pytest.mark.integration
EXAMPLES_PER_ROUTE = 12
# Business rules legitimately refuse some schema-valid input (an expiry in the past, a proof of a
# tree not yet checkpointed), so `positive_data_acceptance` is not asked for.
CHECKS = [sc.not_a_server_error, sc.status_code_conformance, sc.content_type_conformance,
          sc.response_schema_conformance, sc.negative_data_rejection]


def test_api_fuzz(app: Flask, rt: Runtime, tenant: TenantKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    from guard.audit import proofs

    # Fuzzed witness URLs must never be contacted: keep delivery on this machine.
    monkeypatch.setattr(proofs, "deliver", lambda deliveries, **kw: [])
    with transaction(rt.sessions) as s:
        _, token = create_key(s, tenant_id=tenant.id, roles=list(ROLE_NAMES),
                              pepper=rt.keyring.current("api_key_pepper").material, clock=rt.clock)
    headers = {"Authorization": f"Bearer {token}", "X-Guard-Actor": "fuzzer"}
    schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", app)
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 20

    for op in operations:

        @settings(max_examples=EXAMPLES_PER_ROUTE, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case: Any) -> None:
            response = case.call(headers=headers)
            label = f"{case.method} {case.formatted_path}"
            if response.status_code >= 500:
                failures.append(f"{label}: {response.status_code} {response.text[:200]}")
                return
            try:
                case.validate_response(response, headers=headers, checks=CHECKS)
            except FailureGroup as exc:
                failures.append(f"{label}: {str(exc)[:600]}")

        run()
    assert not failures, "\n".join(sorted(set(failures))[:20])
