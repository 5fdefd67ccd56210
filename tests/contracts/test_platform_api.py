"""The reference server keeps the Platform API document (schemas/platform-api.yaml; its validity as
OpenAPI 3.1 is tested in test_server.py): schemathesis generates requests for every operation (valid
and invalid ones, a bounded number), sends them to `reconcile platform serve` on loopback, and checks
that no answer is a 5xx and none falls outside the document (status code, content type, body schema).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest import APPLY_SEED
from hypothesis import HealthCheck, settings
from peers import READ_TOKEN, TOKEN, Served, http_available
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from reconciler.platforms.sqlite import init

API = Path(__file__).resolve().parents[2] / "schemas" / "platform-api.yaml"
EXAMPLES = 25  # per operation: bounded, the suite runs on two shared cores
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    why = http_available()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("api")
    url = f"sqlite:///{root / 'platform.db'}"
    init(url, str(APPLY_SEED))
    with Served(url, root / "server") as s:
        yield s  # type: ignore[misc]


schema = schemathesis.openapi.from_path(API)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_the_server_keeps_the_document(case: Any, served: Served) -> None:
    case.call_and_validate(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS,
                           timeout=30)


def test_an_integral_float_limit_is_an_integer(served: Served) -> None:
    """JSON Schema counts 1000.0 as an integer: the server must page with it (or refuse it), never fail.

    Schemathesis found this one (`"limit": 1046.0` answered 500)."""
    import httpx

    r = httpx.post(f"{served.url}/v1/users/query", json={"customers": ["acme", "globex"], "limit": 1000.0},
                   headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        assert [u["id"] for u in r.json()["users"]["globex"]] == ["hank@globex.example", "mona@globex.example"]


@schema.include(method="GET").parametrize()
@settings(max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_the_read_token_reads_within_the_document(case: Any, served: Served) -> None:
    case.call_and_validate(base_url=served.url, headers={"Authorization": f"Bearer {READ_TOKEN}"},
                           checks=CHECKS, timeout=30)
