"""The OpenAPI contract, fuzzed by schemathesis against the real server: no request may get a 5xx.

The schema is the app's own, built without a server; ``test_the_server_serves_this_schema`` checks that it is
exactly what the running server publishes at ``/openapi.json``. (schemathesis' lazy ``from_fixture`` loader
does not run under pytest 9.)
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from facegender import Settings
from facegender.server import create_app

MAX_EXAMPLES = 25
SPEC: dict[str, Any] = create_app(Settings()).openapi()
schema = schemathesis.openapi.from_dict(SPEC)


@pytest.mark.slow
def test_the_server_serves_this_schema(client: httpx.Client) -> None:
    assert client.get("/openapi.json").json() == SPEC


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: schemathesis.Case, server_url: str) -> None:
    case.call_and_validate(base_url=server_url, checks=[not_a_server_error], timeout=60)
