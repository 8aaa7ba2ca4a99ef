"""What billing reads shows every billed quantity and the usage no price covered: the CSV export (safe to open in a
spreadsheet), invoices, `tenantgate usage` and `tenantgate prices missing`."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from typer.testing import CliRunner

from tenantgate.cli import app
from tenantgate.tenants.metering.pricing import PriceBook
from tests.conftest import SECRET_KEY
from tests.support.gateway import Gateway
from tests.support.metering import make_event, seed

DEC_8 = 1_796_688_000  # 2026-12-08 00:00 UTC: a price table with unit prices (2026-12-07 on) is in effect
JAN_1 = 1_798_761_600


def _unit_events(tenant: str) -> list[dict[str, Any]]:
    def at(hour: int, **fields: Any) -> dict[str, Any]:
        return make_event(tenant_id=tenant, occurred_at=DEC_8 + hour * 3600, response_model=None, **fields)

    no_tokens = {"input_tokens": 0, "output_tokens": 0}
    return [
        at(1, endpoint="/v1/images/generations", category="images", model="dall-e-3", quantity=2, **no_tokens)
        | {"image_quality": "hd", "image_size": "1024x1792"},
        at(2, endpoint="/v1/audio/speech", category="audio_speeches", model="tts-1", quantity=1000, **no_tokens),
        at(3, endpoint="/v1/audio/transcriptions", category="audio_transcriptions", model="whisper-1", quantity=90)
        | {"input_tokens": 0, "output_tokens": 0, "usage_source": None},
        at(4, model="gpt-4o-mini", input_tokens=1000, output_tokens=500),
        at(5, model="acme-llm", input_tokens=700, output_tokens=300),
        at(6, model="acme-llm", input_tokens=100, output_tokens=50),
        at(7, endpoint="/v1/images/generations", category="images", model="dall-e-3", quantity=1, **no_tokens)
        | {"image_size": "999x999", "image_quality": None},
    ]


def test_invoice_shows_images_characters_seconds_and_unpriced_lines(gateway: Gateway, database_url: str) -> None:
    tenant = gateway.new_key("units")["tenant_id"]
    seed(database_url, _unit_events(tenant))
    response = gateway.admin("GET", "/admin/usage/invoices", params={"period": "2026-12", "tenant_id": tenant})
    (invoice,) = response.json()["data"]
    lines = {(line["model"], line["category"]): line for line in invoice["lines"]}
    images = lines[("dall-e-3", "images")]
    # 2 hd 1024x1792 images at $0.12; the third image (999x999) has no price.
    assert (images["images"], images["requests"], images["unpriced_requests"]) == (3, 2, 1)
    assert images["cost_usd"] == "0.240000000"
    assert (lines[("tts-1", "audio_speeches")]["characters"], lines[("tts-1", "audio_speeches")]["cost_usd"]) == (
        1000,
        "0.015000000",
    )
    whisper = lines[("whisper-1", "audio_transcriptions")]
    assert (whisper["seconds"], whisper["cost_usd"]) == (90, "0.009000000")
    acme = lines[("acme-llm", "completions")]
    assert (acme["requests"], acme["unpriced_requests"], acme["cost_usd"], acme["input_tokens"]) == (2, 2, None, 800)
    total = invoice["total"]
    # 0.24 + 0.015 + 0.009 + gpt-4o-mini (1000 x 0.15 + 500 x 0.60) / 1e6; the unpriced requests are in no cost.
    assert (total["cost_usd"], total["unpriced_requests"], total["requests"]) == ("0.264450000", 3, 7)
    assert (total["images"], total["characters"], total["seconds"]) == (3, 1000, 90)


def _env(database_url: str) -> dict[str, str]:
    return {
        "TENANTGATE_DATABASE_URL": database_url,
        "TENANTGATE_SECRET_KEY": SECRET_KEY,
        "TENANTGATE_ENV": "production",
    }


def test_cli_usage_shows_billed_quantities_and_unpriced_usage(gateway: Gateway, database_url: str) -> None:
    tenant = gateway.new_key("cli-units")["tenant_id"]
    seed(database_url, _unit_events(tenant))
    result = CliRunner().invoke(app, ["usage", "--period", "2026-12", "--tenant", tenant], env=_env(database_url))
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ")}
    assert "3 images" in rows["dall-e-3"]
    assert "0.240000000 +1 unpriced" in rows["dall-e-3"]
    assert "1000 characters" in rows["tts-1"] and "90 seconds" in rows["whisper-1"]
    assert rows["acme-llm"].rstrip().endswith("unpriced")
    assert "3 request(s) have no price" in result.stdout


def test_cli_usage_shows_every_billed_quantity_of_a_line(gateway: Gateway, database_url: str) -> None:
    tenant = gateway.new_key("cli-all-units")["tenant_id"]
    extra = [
        make_event(
            tenant_id=tenant, occurred_at=DEC_8 + 8 * 3600, model="gpt-4o", response_model=None, web_search_calls=2
        ),
        make_event(
            tenant_id=tenant,
            occurred_at=DEC_8 + 9 * 3600,
            endpoint="/v1/audio/speech",
            category="audio_speeches",
            model="gpt-4o-mini-tts",
            response_model=None,
            input_tokens=10,
            output_tokens=300,
            output_audio_tokens=300,
        ),
    ]
    seed(database_url, [*_unit_events(tenant), *extra])
    result = CliRunner().invoke(app, ["usage", "--period", "2026-12", "--tenant", tenant], env=_env(database_url))
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ")}
    assert "2 web searches" in rows["gpt-4o"]
    assert "300 audio output tokens" in rows["gpt-4o-mini-tts"]
    for shown in ("3 images", "1000 characters", "90 seconds", "300 audio output tokens", "2 web searches"):
        assert shown in rows["total"], rows["total"]


def test_prices_missing_lists_models_used_without_a_price(gateway: Gateway, database_url: str) -> None:
    tenant, other = gateway.new_key("missing")["tenant_id"], gateway.new_key("missing-2")["tenant_id"]
    seed(
        database_url,
        [*_unit_events(tenant), make_event(tenant_id=other, occurred_at=DEC_8, model="acme-llm", response_model=None)],
    )
    seed(database_url, [make_event(tenant_id=tenant, occurred_at=JAN_1 + 5, model="later-llm", response_model=None)])
    command = ["prices", "missing", "--period", "2026-12", "--json"]
    result = CliRunner().invoke(app, command, env=_env(database_url))
    assert result.exit_code == 0, result.output
    listed = {(row["model"], row["reason"]): row for row in json.loads(result.stdout)["data"]}
    assert set(listed) == {("acme-llm", "model"), ("dall-e-3", "option")}
    acme = listed[("acme-llm", "model")]
    assert (acme["requests"], acme["tenants"], acme["input_tokens"], acme["output_tokens"]) == (3, 2, 810, 355)
    image = listed[("dall-e-3", "option")]
    assert (image["requests"], image["quantity"], image["quantity_unit"]) == (1, 1, "images")
    human = CliRunner().invoke(
        app, ["prices", "missing", "--period", "2026-12", "--tenant", tenant], env=_env(database_url)
    )
    assert "acme-llm  completions: 2 request(s) from 1 tenant(s)" in human.stdout
    assert "no price for its image quality/size" in human.stdout
    later = CliRunner().invoke(app, ["prices", "missing", "--period", "2027-02"], env=_env(database_url))
    assert later.exit_code == 0 and "had a price" in later.stdout


def test_csv_export_neutralizes_formulas_and_shows_unpriced_events(gateway: Gateway, database_url: str) -> None:
    tenant = gateway.new_key("spreadsheet")["tenant_id"]
    hostile = ["=1+2+cmd|calc", "+SUM(A1:A2)", "-2+3", "@cmd", "\t=1", "\r=1", ' =HYPERLINK("x")']
    events = [
        make_event(tenant_id=tenant, occurred_at=DEC_8 + i, model=name, response_model=None)
        for i, name in enumerate(hostile)
    ]
    events.append(make_event(tenant_id=tenant, occurred_at=DEC_8 + 60, model="gpt-4o-mini", request_id="-req"))
    seed(database_url, events)
    response = gateway.admin("GET", "/admin/usage/export.csv", params={"tenant_id": tenant, "period": "2026-12"})
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text, newline="")))
    assert [row["model"] for row in rows] == ["'" + name for name in hostile] + ["gpt-4o-mini"]
    assert rows[-1]["request_id"] == "'-req"
    for row in rows[:-1]:  # no price for those names: unpriced, with an empty cost, not 0
        assert (row["unpriced"], row["cost_usd"], row["price_version"]) == ("model", "", "")
    priced = rows[-1]
    in_effect = PriceBook.load().table_at(DEC_8 + 60).version
    assert (priced["unpriced"], priced["cost_usd"], priced["price_version"]) == ("", "0.000004500", in_effect)
