"""schemathesis against the gateway's own OpenAPI: admin, usage and ops routes never answer 5xx and match the schema.

A served gateway on a real Postgres database (where over-long strings or out-of-range numbers become database errors,
unlike SQLite) with the admin token. Each operation gets a bounded, derandomized set of generated requests; every
response must be a non-5xx and conform to the documented response schema. (Operations are driven one by one from
the loaded schema: schemathesis's lazy pytest loader does not work with pytest 9 yet.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import ADMIN_TOKEN
from tests.support.gateway import Gateway

pytestmark = pytest.mark.slow  # starts processes or a browser: `-m 'not slow'` skips it for a quick loop

ROUTES = r"^/(admin|v1/organization|healthz|readyz|metrics)"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _with_real_ids(ids: dict[str, str]) -> Callable[[tuple[Any, bool]], Any]:
    """Half the cases address existing objects (random ids only ever reach the 404 branch)."""

    def fill(drawn: tuple[Any, bool]) -> Any:
        case, real = drawn
        if real and case.path_parameters:
            for name in case.path_parameters:
                if name in ids:
                    case.path_parameters[name] = ids[name]
        return case

    return fill


def _fuzz(operation: Any, ids: dict[str, str]) -> str | None:
    """The first failing check of this operation (after hypothesis shrinks it), or None."""

    @given(case=st.tuples(operation.as_strategy(), st.booleans()).map(_with_real_ids(ids)))
    @settings(max_examples=20, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call(headers=AUTH)
        try:
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
        except BaseExceptionGroup as failed:  # schemathesis' FailureGroup is a BaseException: hypothesis needs an error
            raise AssertionError(str(failed)) from None

    try:
        run()
    except Exception as failure:  # a failed check (with the request that caused it) or a transport error
        nested = "; ".join(str(e) for e in getattr(failure, "exceptions", ()))
        return f"{operation.method.upper()} {operation.path}: {failure} {nested}"[:3000]
    return None


def test_admin_usage_and_ops_routes_never_5xx_and_match_their_schema(
    gateway_factory: Callable[..., Gateway], postgres_url: str, dev_upstream: str
) -> None:
    gateway = gateway_factory(
        database_url=postgres_url, upstream_base_url=dev_upstream, auth_failures_per_source_per_minute=100_000
    )
    key = gateway.new_key("fuzz-seed")
    plan = gateway.admin("POST", "/admin/plans", json={"name": "fuzz-plan"}).json()
    token = gateway.admin("POST", "/admin/tokens", json={"name": "fuzz", "role": "billing"}).json()
    upstream = next(iter(gateway.runtime.routing.upstreams))
    ids = {
        "tenant_id": key["tenant_id"],
        "key_id": key["id"],
        "plan_id": plan["id"],
        "token_id": token["id"],
        "upstream": upstream,
        "family": "completions",
    }
    schema = schemathesis.openapi.from_url(gateway.url + "/openapi.json", headers=AUTH).include(path_regex=ROUTES)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30, [f"{o.method} {o.path}" for o in operations]
    failures = [failure for operation in operations if (failure := _fuzz(operation, ids)) is not None]
    assert failures == [], "\n\n".join(failures)


def test_nul_characters_are_refused_with_400_not_a_database_error(
    gateway_factory: Callable[..., Gateway], postgres_url: str, dev_upstream: str
) -> None:
    """Found by the fuzz run: PostgreSQL text cannot hold U+0000, and a NUL reaching a query was a 500 (or 503)."""
    gateway = gateway_factory(database_url=postgres_url, upstream_base_url=dev_upstream)
    key = gateway.new_key("nul")
    for method, path in [
        ("GET", "/admin/tenants/a%00b"),
        ("GET", "/admin/keys/a%00b"),
        ("GET", "/admin/plans/a%00b"),
        ("GET", "/admin/audit?after=a%00b"),
        ("GET", "/admin/usage/events?tenant_id=a%00b"),
        ("GET", "/v1/organization/usage/completions?start_time=0&models=a%00b"),
    ]:
        response = gateway.admin(method, path)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["type"] == "invalid_request_error"
    for path, body in [
        ("/admin/tenants", {"name": "a\u0000b"}),
        (f"/admin/tenants/{key['tenant_id']}/keys", {"name": "a\u0000b"}),
        ("/admin/plans", {"name": "a\u0000b"}),
    ]:
        response = gateway.admin("POST", path, json=body)
        assert response.status_code == 422, (path, response.text)  # like every other invalid admin body
        assert "NUL" in response.json()["error"]["message"]
    assert gateway.admin("GET", f"/admin/tenants/{key['tenant_id']}").status_code == 200


def test_usage_export_refuses_out_of_range_times_and_keeps_odd_tenant_ids_out_of_headers(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    """Found by the fuzz run: both were 500s (datetime overflow; a non-Latin-1 or CR/LF tenant id in a header)."""
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream)
    for path in ("/admin/usage/export.csv", "/admin/usage/invoices"):
        response = gateway.admin("GET", path, params={"start_time": 0, "end_time": 99_999_999_999_999})
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["param"] == "end_time"
    for tenant_id in ("caf\u00e9\u2713", 'a"b\r\nSet-Cookie: x=1'):
        response = gateway.admin("GET", "/admin/usage/export.csv", params={"tenant_id": tenant_id})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert "set-cookie" not in response.headers
        assert response.headers["content-disposition"].startswith('attachment; filename="usage-')
