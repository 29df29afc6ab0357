"""deploy/compose.yaml: valid by the compose specification, and the topology we promise."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from .conftest import COMPOSE, COMPOSE_SCHEMA, REPO


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def test_compose_file_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    assert COMPOSE_SCHEMA.is_file(), "run `make setup`: it fetches the compose-spec JSON schema"
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_topology(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("kafka", "kafka-init", "kafka-ui", "postgres", "init", "producer", "consumer", "compactor", "api"):
        assert name in services, name
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert "kafbat/kafka-ui" in services["kafka-ui"]["image"]
    assert services["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == "kafka:9092"
    assert services["consumer"]["deploy"]["replicas"] == 3
    init = " ".join(services["kafka-init"]["command"])
    assert re.search(r"--topic sensor_metrics --partitions 12\b", init)
    assert re.search(r"--topic sensor_metrics\.dlq --partitions 12\b", init)


def test_every_service_has_a_healthcheck_a_restart_policy_and_healthy_dependencies(compose: dict[str, Any]) -> None:
    anchors = compose.get("x-app", {})
    for name, svc in compose["services"].items():
        merged = {**anchors, **svc} if svc.get("image", "").startswith("sensorpipe") else svc
        assert "restart" in merged, f"{name} has no restart policy"
        assert "healthcheck" in merged or name in _image_healthchecked(compose), f"{name} has no healthcheck"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert cond["condition"] in ("service_healthy", "service_completed_successfully"), (name, dep)


def _image_healthchecked(compose: dict[str, Any]) -> set[str]:
    """Services built from our Dockerfile inherit its HEALTHCHECK."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile
    return {n for n, s in compose["services"].items() if str(s.get("image", "")).startswith("sensorpipe")}


def test_required_variables_fail_loudly_and_data_sits_in_named_volumes(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    for var in ("POSTGRES_PASSWORD", "SENSORPIPE_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD"):
        assert re.search(r"\$\{" + var + r":\?[^}]+\}", text), var
    volumes = compose["volumes"]
    assert {"kafka-data", "postgres-data"} <= set(volumes)
    assert "kafka-data:/var/lib/kafka/data" in compose["services"]["kafka"]["volumes"]
    assert "postgres-data:/var/lib/postgresql/data" in compose["services"]["postgres"]["volumes"]


def test_observability_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["prometheus"]["profiles"] == ["observability"]
    assert services["grafana"]["profiles"] == ["observability"]
    prom = yaml.safe_load((REPO / "deploy" / "observability" / "prometheus.yml").read_text())
    jobs = {j["job_name"] for j in prom["scrape_configs"]}
    assert jobs == {"api", "producer", "consumer", "compactor"}
    dash = json.loads((REPO / "deploy" / "observability" / "grafana" / "dashboards" / "sensorpipe.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in (
        "sensorpipe_producer_acked_total",
        "sensorpipe_consumer_stored_total",
        "sensorpipe_consumer_lag",
        "sensorpipe_consumer_duplicates_total",
        "sensorpipe_consumer_dlq_total",
    ):
        assert metric in exprs, metric


def test_dockerfile_is_multistage_non_root_and_pinned() -> None:
    text = (REPO / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(froms) >= 3
    assert all(re.search(r":\d+\.\d+", f) for f in froms), froms  # pinned versions, never :latest
    assert re.search(r"^USER sensorpipe$", text, re.M)
    assert "HEALTHCHECK" in text
    assert (REPO / ".dockerignore").is_file()
