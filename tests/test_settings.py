"""Settings refuse insecure defaults outside dev and keep secrets out of reprs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tenantgate.platform.upstream.config import gateway_config
from tenantgate.settings import Settings


def test_default_secret_refused_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TENANTGATE_SECRET_KEY", raising=False)
    with pytest.raises(ValidationError, match="TENANTGATE_SECRET_KEY"):
        Settings(_env_file=None, env="production")
    assert Settings(_env_file=None, env="dev").env == "dev"


def test_env_prefix_and_openai_key_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TENANTGATE_UPSTREAM_API_KEY", raising=False)
    monkeypatch.setenv("TENANTGATE_ENV", "dev")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-var")
    monkeypatch.setenv("TENANTGATE_UPSTREAM_BASE_URL", "http://localhost:11434/v1/")
    settings = Settings(_env_file=None)
    assert settings.upstream_api_key is not None
    assert settings.upstream_api_key.get_secret_value() == "sk-from-openai-var"
    assert settings.upstream_base_url == "http://localhost:11434/v1"
    assert "sk-from-openai-var" not in repr(settings)


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("TENANTGATE_ENV=dev\nTENANTGATE_REDIS_URL=redis://example:6379/0\n")
    monkeypatch.delenv("TENANTGATE_REDIS_URL", raising=False)
    assert Settings(_env_file=env_file).redis_url == "redis://example:6379/0"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", []),
        ("127.0.0.0/8", ["127.0.0.0/8"]),
        ("10.20.0.0/16, fd00::/8", ["10.20.0.0/16", "fd00::/8"]),
        ('["192.168.1.0/24"]', ["192.168.1.0/24"]),
    ],
)
def test_tenant_upstream_allowed_networks_from_env(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("TENANTGATE_TENANT_UPSTREAM_ALLOWED_NETWORKS", value)
    settings = Settings(_env_file=None, env="dev")
    assert [str(network) for network in settings.tenant_upstream_allowed_networks] == expected
    assert settings.tenant_upstream_allow_http is False


def test_tenant_upstream_network_with_host_bits_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTGATE_TENANT_UPSTREAM_ALLOWED_NETWORKS", "10.0.0.1/8")
    with pytest.raises(ValidationError, match="host bits set"):
        Settings(_env_file=None, env="dev")


def _documented_routing_example() -> str:
    page = (Path(__file__).parent.parent / "docs" / "upstreams.md").read_text()
    section = page[page.index("## The routing table") :]
    return section[section.index("```yaml\n") + len("```yaml\n") : section.index("```\n", section.index("```yaml"))]


def test_the_documented_routing_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its comments mention ${VAR}: a comment is not a reference (it used to stop the server at start).
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key")
    monkeypatch.delenv("VAR", raising=False)
    config = tmp_path / "routes.yaml"
    config.write_text(_documented_routing_example())
    routing = gateway_config(Settings(_env_file=None, env="dev", config_file=config))
    assert {u.name: u.api_key.get_secret_value() for u in routing.upstreams if u.api_key} == {
        "openai": "sk-openai",
        "azure-eu": "azure-key",
    }
    assert routing.default_upstream == "openai"


def test_a_referenced_value_is_taken_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_TEST_SECRET", "pa#ss: {word} ${OTHER}")
    config = tmp_path / "routes.yaml"
    config.write_text("upstreams:\n  - name: a\n    base_url: http://127.0.0.1:9/v1\n    api_key: ${TG_TEST_SECRET}\n")
    routing = gateway_config(Settings(_env_file=None, env="dev", config_file=config))
    key = routing.upstreams[0].api_key
    assert key is not None and key.get_secret_value() == "pa#ss: {word} ${OTHER}"

    monkeypatch.delenv("TG_TEST_SECRET")
    with pytest.raises(ValueError, match="environment variable TG_TEST_SECRET is not set"):
        gateway_config(Settings(_env_file=None, env="dev", config_file=config))


def test_a_redis_url_the_client_cannot_honour_stops_serve_with_one_line(tmp_path: Path) -> None:
    """Sentinel, Cluster, unknown schemes and options: refused when the settings are read, by every command."""
    from typer.testing import CliRunner

    from tenantgate.cli import app

    with pytest.raises(ValidationError, match="TENANTGATE_REDIS_URL: Redis Sentinel URLs are not supported"):
        Settings(_env_file=None, env="dev", redis_url="redis+sentinel://:hunter2@sentinel-0:26379/mymaster")
    env = {
        "TENANTGATE_ENV": "dev",
        "TENANTGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'tg.db'}",
        "TENANTGATE_REDIS_URL": "redis://:hunter2@cache:6379/0?socket_timeout=1",
    }
    result = CliRunner().invoke(app, ["serve"], env=env)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "configuration error: TENANTGATE_REDIS_URL: unsupported Redis URL option(s) socket_timeout "
        "(supported: client_name, db)"
    ]
    assert "hunter2" not in result.output + result.stderr and not (tmp_path / "tg.db").exists()
