"""The Platform API document (schemas/platform-api.yaml) is valid OpenAPI 3.1, and the reference server
keeps it: schemathesis generates requests for every operation (valid and invalid ones, a bounded number),
sends them to `reconcile platform serve` on loopback, and checks that no answer is a 5xx and none falls
outside the document (status code, content type, body schema).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
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


def test_the_document_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator

    doc: dict[str, Any] = yaml.safe_load(API.read_text("utf-8"))
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)


def test_the_document_ships_in_the_package() -> None:
    from importlib import resources

    shipped = resources.files("reconciler.schemas").joinpath("platform-api.yaml")
    assert shipped.read_text("utf-8") == API.read_text("utf-8")


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


@schema.include(method="GET").parametrize()
@settings(max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_the_read_token_reads_within_the_document(case: Any, served: Served) -> None:
    case.call_and_validate(base_url=served.url, headers={"Authorization": f"Bearer {READ_TOKEN}"},
                           checks=CHECKS, timeout=30)
