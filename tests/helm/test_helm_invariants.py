"""What the chart promises an operator: probes, a locked-down pod, secrets only in Secrets, the Redis guard,
migrations before pods start, graceful shutdown and config changes that roll the pods."""

from __future__ import annotations

import base64
import json
import re

import helm_python as helm
import pytest
import yaml

SECRET_ENV = {
    "TENANTGATE_SECRET_KEY",
    "TENANTGATE_ADMIN_TOKEN",
    "TENANTGATE_UPSTREAM_API_KEY",
    "TENANTGATE_DATABASE_URL",
    "TENANTGATE_REDIS_URL",
}


def server_container(rendered):
    (container,) = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def literal_env(rendered, container) -> dict[str, str]:
    """Every env var's value as the container would see it (ConfigMap refs resolved)."""
    configmaps = {c["metadata"]["name"]: c.get("data", {}) for c in rendered.of_kind("ConfigMap")}
    resolved = {}
    for name, entry in env_of(container).items():
        if "value" in entry:
            resolved[name] = entry["value"]
        elif "configMapKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["configMapKeyRef"]
            resolved[name] = configmaps[ref["name"]][ref["key"]]
    return resolved


def pod_specs(rendered):
    yield rendered.one("Deployment")["spec"]["template"]["spec"]
    for job in rendered.of_kind("Job"):
        yield job["spec"]["template"]["spec"]


# --- probes and the pod's security -------------------------------------------------------------------------


def test_probes_use_health_endpoints_on_the_served_port(case):
    container = server_container(case.render())
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "metrics": 9464}
    for probe, path in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    assert container["args"][:5] == ["serve", "--host", "0.0.0.0", "--port", "8080"]


def test_every_pod_runs_non_root_read_only_without_capabilities(case):
    for spec in pod_specs(case.render()):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_spool_and_tmp_are_writable_volumes(case):
    rendered = case.render()
    spec = rendered.one("Deployment")["spec"]["template"]["spec"]
    container = server_container(rendered)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    spool_dir = literal_env(rendered, container)["TENANTGATE_SPOOL_DIR"]
    assert "emptyDir" in volumes[mounts[spool_dir]]
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_workers_value_becomes_the_workers_flag(minimal, with_values, render):
    container = server_container(render(with_values(minimal, {"workers": 4, "redis": {"url": "redis://r:6379/0"}})))
    args = container["args"]
    assert args[args.index("--workers") + 1] == "4"


def test_topology_spread_and_disruption_budget_select_the_server_pods(production, render):
    rendered = render(production)
    deployment = rendered.one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    selectors = [c["labelSelector"]["matchLabels"] for c in constraints]
    selectors.append(rendered.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    selectors.append(rendered.one("Service", "rel-tenantgate")["spec"]["selector"])
    selectors.append(rendered.one("Service", "rel-tenantgate-metrics")["spec"]["selector"])
    selectors.append(rendered.one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"])
    job_labels = rendered.one("Job")["spec"]["template"]["metadata"]["labels"]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
        # Migration pods must never receive traffic or count towards the budget.
        assert not selector.items() <= job_labels.items()
    budget = rendered.one("PodDisruptionBudget")["spec"]
    assert budget["minAvailable"] == 2 and "maxUnavailable" not in budget


def test_autoscaling_owns_the_replica_count(production, render):
    rendered = render(production)
    assert "replicas" not in rendered.one("Deployment")["spec"]
    hpa = rendered.one("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rel-tenantgate"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    assert {m["resource"]["name"] for m in hpa["metrics"]} == {"cpu", "memory"}


def test_network_policy_admits_the_http_port_and_dns(production, render):
    policy = render(production).one("NetworkPolicy")["spec"]
    ingress = policy["ingress"][0]  # the metrics port's rule follows (test_helm_isolation.py)
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert len(ingress["from"]) == 2
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert {"port": 53, "protocol": "UDP"} in policy["egress"][0]["ports"]


# --- settings and secrets ---------------------------------------------------------------------------------


def test_settings_reach_the_server_through_the_configmap(production, render):
    rendered = render(production)
    container = server_container(rendered)
    env = literal_env(rendered, container)
    assert env["TENANTGATE_MIGRATE_ON_START"] == "false"
    assert env["TENANTGATE_UPSTREAM_BASE_URL"] == "https://api.openai.com/v1"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert "env=prod" in env["OTEL_RESOURCE_ATTRIBUTES"]
    config_file = env["TENANTGATE_CONFIG_FILE"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert config_file == mounts["config-file"] + "/config.yaml"
    configmap = rendered.one("ConfigMap", "rel-tenantgate")
    assert yaml.safe_load(configmap["data"]["config.yaml"]) == production["configFile"]["content"]


def _secret_strings(values) -> list[str]:
    found = [values.get("secretKey"), values.get("adminToken"), values.get("upstream", {}).get("apiKey")]
    found += [values.get("database", {}).get("url"), values.get("redis", {}).get("url")]
    return [s for s in found if s]


def test_secrets_never_appear_outside_secrets(production, chart_with_observability, secret_markers, render):
    rendered = render(production, chart_with_observability)
    secrets = _secret_strings(production)
    needles = set(secret_markers.values()) | set(secrets)
    needles |= {base64.b64encode(s.encode()).decode() for s in secrets}
    # The sweep has teeth only if every secret did reach a Secret.
    secret_data = rendered.one("Secret", "rel-tenantgate")["data"]
    assert {base64.b64decode(v).decode() for v in secret_data.values()} == set(secrets)
    for obj in rendered.objects:
        if obj["kind"] == "Secret":
            continue
        text = json.dumps(obj)
        leaked = [n for n in needles if n in text]
        assert not leaked, f"{obj['kind']} {obj['metadata']['name']} contains {leaked}"
    assert not [n for n in needles if n in rendered.texts["tenantgate/templates/NOTES.txt"]]


def test_secret_env_comes_from_secret_keys_that_exist(case):
    rendered = case.render()
    secrets = {s["metadata"]["name"]: s["data"] for s in rendered.of_kind("Secret")}
    containers = [server_container(rendered)] + [
        j["spec"]["template"]["spec"]["containers"][0] for j in rendered.of_kind("Job")
    ]
    for container in containers:
        env = env_of(container)
        expected = {"TENANTGATE_SECRET_KEY", "TENANTGATE_ADMIN_TOKEN", "TENANTGATE_DATABASE_URL"}
        assert expected <= env.keys()
        for name in SECRET_ENV & env.keys():
            ref = env[name]["valueFrom"]["secretKeyRef"]
            if ref["name"] in secrets:
                assert ref["key"] in secrets[ref["name"]], (name, ref)
            else:
                # Not rendered by the chart: must be the user's own Secret.
                assert case.name == "existing_secret" and ref["name"] == "tg-secrets", (name, ref)


def test_existing_secret_replaces_the_charts_secret(existing_secret, render):
    rendered = render(existing_secret)
    assert rendered.of_kind("Secret") == []
    env = env_of(server_container(rendered))
    assert env["TENANTGATE_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "tg-secrets", "key": "redis-url"}
    assert env["TENANTGATE_UPSTREAM_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_no_redis_env_without_redis(minimal, render):
    assert "TENANTGATE_REDIS_URL" not in env_of(server_container(render(minimal)))


# --- guards -----------------------------------------------------------------------------------------------

REDIS_GUARD = "no Redis is configured"


@pytest.mark.parametrize(
    "override",
    [{"replicaCount": 2}, {"autoscaling": {"enabled": True}}, {"workers": 3}],
    ids=["replicas", "autoscaling", "workers"],
)
def test_scaling_without_redis_fails_with_a_clear_message(minimal, with_values, render, override):
    with pytest.raises(helm.HelmRenderError) as failure:
        render(with_values(minimal, override))
    message = str(failure.value)
    assert REDIS_GUARD in message
    assert "Set redis.url or redis.existingSecret" in message


@pytest.mark.parametrize("redis", [{"url": "redis://redis:6379/0"}, {"existingSecret": "redis-credentials"}])
def test_scaling_with_redis_renders(minimal, with_values, render, redis):
    rendered = render(with_values(minimal, {"replicaCount": 3, "redis": redis}))
    assert rendered.one("Deployment")["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"secretKey": ""}, "secretKey is required"),
        ({"adminToken": ""}, "adminToken is required"),
        ({"database": {"url": ""}}, "no database configured"),
        (
            {
                "secretKey": "",
                "adminToken": "",
                "database": {"url": ""},
                "existingSecret": "tg",
                "redis": {"url": "redis://r"},
            },
            "redis.url is set together with existingSecret",
        ),
        ({"database": {"existingSecret": "db"}}, "set database.url or database.existingSecret, not both"),
        ({"shutdown": {"terminationGracePeriodSeconds": 30}}, "must be at least preStopSleepSeconds + graceSeconds"),
        ({"podDisruptionBudget": {"enabled": True, "maxUnavailable": None}}, "needs minAvailable or maxUnavailable"),
        ({"httpRoute": {"enabled": True}}, "httpRoute.parentRefs must name at least one Gateway"),
        ({"metricsPort": 8080}, "metricsPort must differ from containerPort"),
        (
            {"networkPolicy": {"enabled": True}, "serviceMonitor": {"enabled": True}},
            "networkPolicy.metricsFrom is empty, so Prometheus could not reach metricsPort",
        ),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(minimal, with_values, render, override, message):
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(with_values(minimal, override))


# --- graceful shutdown ------------------------------------------------------------------------------------


def test_termination_waits_for_prestop_and_in_flight_streams(case):
    rendered = case.render()
    spec = rendered.one("Deployment")["spec"]["template"]["spec"]
    container = server_container(rendered)
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    grace = int(literal_env(rendered, container)["TENANTGATE_SHUTDOWN_GRACE_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] > int(sleep[1]) + grace
    assert rendered.one("Deployment")["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


# --- migrations -------------------------------------------------------------------------------------------


def _hook(obj) -> tuple[set[str], int] | None:
    annotations = obj["metadata"].get("annotations", {})
    if "helm.sh/hook" not in annotations:
        return None
    return set(annotations["helm.sh/hook"].split(",")), int(annotations.get("helm.sh/hook-weight", "0"))


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(case):
    rendered = case.render()
    job = rendered.one("Job")
    events, _ = _hook(job)
    assert events == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in job["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert literal_env(rendered, container)["TENANTGATE_MIGRATE_ON_START"] == "false"


def test_migration_job_only_needs_what_exists_before_install(case):
    """On first install the hook runs before every ordinary release object, so all it references must be a hook
    with a lower weight or something the chart does not create."""
    rendered = case.render()
    job = rendered.one("Job")
    _, job_weight = _hook(job)
    ordinary = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects if _hook(o) is None}
    earlier_hooks = {
        (o["kind"], o["metadata"]["name"]) for o in rendered.objects if _hook(o) and _hook(o)[1] < job_weight
    }
    pod = job["spec"]["template"]["spec"]
    refs = [("ServiceAccount", pod["serviceAccountName"])]
    for entry in pod["containers"][0]["env"]:
        source = entry.get("valueFrom", {})
        if "secretKeyRef" in source:
            refs.append(("Secret", source["secretKeyRef"]["name"]))
        assert "configMapKeyRef" not in source, entry
    for ref in refs:
        assert ref not in ordinary, f"the migration Job needs {ref}, created only after the hooks"
        if ref[0] == "Secret" and case.name != "existing_secret":
            assert ref in earlier_hooks
    if case.name != "existing_secret":
        hook_secret = rendered.one("Secret", "rel-tenantgate-migrations")
        assert _hook(hook_secret)[0] == {"pre-install", "pre-upgrade"}
        assert hook_secret["data"] == rendered.one("Secret", "rel-tenantgate")["data"]


def test_migrations_can_be_disabled(minimal, with_values, render):
    rendered = render(with_values(minimal, {"migrations": {"enabled": False}}))
    assert rendered.of_kind("Job") == []
    assert [s["metadata"]["name"] for s in rendered.of_kind("Secret")] == ["rel-tenantgate"]
    assert literal_env(rendered, server_container(rendered))["TENANTGATE_MIGRATE_ON_START"] == "false"


# --- rolling on change ------------------------------------------------------------------------------------


def _checksums(rendered) -> dict[str, str]:
    annotations = rendered.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    return {k: v for k, v in annotations.items() if k.startswith("checksum/")}


def test_checksums_roll_pods_when_config_or_secrets_change(minimal, with_values, render):
    base = _checksums(render(minimal))
    assert base.keys() == {"checksum/config", "checksum/secret"}
    assert _checksums(render(minimal)) == base

    config_changed = _checksums(render(with_values(minimal, {"logLevel": "DEBUG"})))
    assert config_changed["checksum/config"] != base["checksum/config"]
    assert config_changed["checksum/secret"] == base["checksum/secret"]

    secret_changed = _checksums(render(with_values(minimal, {"adminToken": "another-token"})))
    assert secret_changed["checksum/secret"] != base["checksum/secret"]
    assert secret_changed["checksum/config"] == base["checksum/config"]


# --- observability ----------------------------------------------------------------------------------------


def test_dashboards_are_embedded_from_the_chart_files(production, chart_with_observability, render):
    rendered = render(production, chart_with_observability)
    dashboards = {
        c["metadata"]["name"]: c
        for c in rendered.of_kind("ConfigMap")
        if "grafana_dashboard" in c["metadata"]["labels"]
    }
    assert set(dashboards) == {"rel-tenantgate-dashboard-tenant-overview", "rel-tenantgate-dashboard-upstreams"}
    overview = dashboards["rel-tenantgate-dashboard-tenant-overview"]
    assert overview["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert overview["metadata"]["namespace"] == "monitoring"
    assert overview["metadata"]["annotations"]["grafana_folder"] == "tenantgate"
    files = chart_with_observability / "files" / "dashboards"
    assert overview["data"]["Tenant_Overview.json"] == (files / "Tenant_Overview.json").read_text().rstrip("\n")
    assert json.loads(overview["data"]["Tenant_Overview.json"])["panels"]


def test_dashboard_sidecar_label_is_configurable(production, with_values, chart_with_observability, render):
    values = with_values(
        production, {"grafanaDashboards": {"label": "dashboards.grafana.io/import", "labelValue": "yes"}}
    )
    for configmap in render(values, chart_with_observability).of_kind("ConfigMap"):
        if configmap["metadata"]["name"].startswith("rel-tenantgate-dashboard-"):
            assert configmap["metadata"]["labels"]["dashboards.grafana.io/import"] == "yes"
            assert "grafana_dashboard" not in configmap["metadata"]["labels"]


def test_prometheus_rule_embeds_the_rule_file(production, chart_with_observability, render):
    rule = render(production, chart_with_observability).one("PrometheusRule")
    expected = yaml.safe_load((chart_with_observability / "files" / "prometheus-rules.yaml").read_text())
    assert rule["spec"]["groups"] == expected["groups"]
    # Prometheus' own templating must pass through Helm untouched.
    assert rule["spec"]["groups"][0]["rules"][0]["annotations"]["summary"] == "{{ $labels.instance }} is down"


def test_observability_toggles_render_nothing_without_the_files(production, chart_without_observability, render):
    rendered = render(production, chart_without_observability)
    assert rendered.of_kind("PrometheusRule") == []
    assert [c["metadata"]["name"] for c in rendered.of_kind("ConfigMap")] == ["rel-tenantgate"]
    assert "no files/prometheus-rules.yaml" in rendered.texts["tenantgate/templates/NOTES.txt"]


def test_observability_is_off_by_default(minimal, chart_with_observability, render):
    rendered = render(minimal, chart_with_observability)
    kinds = {o["kind"] for o in rendered.objects}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert [c["metadata"]["name"] for c in rendered.of_kind("ConfigMap")] == ["rel-tenantgate"]


def test_a_broken_rule_file_fails_with_a_clear_message(production, chart_with_observability, render):
    (chart_with_observability / "files" / "prometheus-rules.yaml").write_text("rules:\n  - alert: X\n")
    with pytest.raises(helm.HelmRenderError, match="must be a rule file with a `groups:` list"):
        render(production, chart_with_observability)
