"""infra/terraform/aws: formatted, documented, encrypted, and closed to the internet but for the ALB."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import hcl2
import pytest

from .conftest import CHECKOV, TF

_META = {"__is_block__", "__start_line__", "__end_line__"}


def _norm(x: Any) -> Any:
    """python-hcl2's output differs between installs (values wrapped in one-element lists or
    not, strings and keys quoted or not); reduce both to plain values."""
    if isinstance(x, dict):
        return {_unquote(k): _norm(v) for k, v in x.items() if k not in _META}
    if isinstance(x, list):
        items = [_norm(i) for i in x]
        return items[0] if len(items) == 1 else items
    if isinstance(x, str):
        return _unquote(x)
    return x


def _unquote(v: str) -> str:
    return v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v


def _load(name: str) -> dict[str, Any]:
    with open(TF / name) as f:
        return _norm(hcl2.load(f))  # type: ignore[no-any-return]


def _blocks(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    """All blocks of a kind (variable, module, ...) by name."""
    raw = doc.get(kind, [])
    out: dict[str, Any] = {}
    for block in raw if isinstance(raw, list) else [raw]:
        out.update(block)
    return out


def _resources(doc: dict[str, Any], rtype: str) -> dict[str, Any]:
    """Resources of one type by name (each resource block is its own {type: {name: spec}})."""
    out: dict[str, Any] = {}
    for block in doc.get("resource", []):
        out.update(block.get(rtype, {}))
    return out


def _strip(v: Any) -> str:
    return str(v).strip('"${}')


def test_four_file_layout_and_examples() -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "example.tfvars", "README.md"):
        assert (TF / name).is_file(), name


@pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform CLI on this machine")
def test_terraform_fmt() -> None:
    out = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", str(TF)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_variable_has_type_description_and_default_or_is_required_on_purpose() -> None:
    variables = _blocks(_load("variables.tf"), "variable")
    assert len(variables) > 10
    for name, spec in variables.items():
        assert spec.get("description"), f"variable {name} has no description"
        assert "type" in spec, f"variable {name} has no type"
        assert "default" in spec or name == "image", f"variable {name} has no default"


def test_versions_are_pinned() -> None:
    providers = _load("versions.tf")["terraform"]["required_providers"]
    assert providers and all(p.get("version") for p in providers.values())
    modules = _blocks(_load("main.tf"), "module")
    assert set(modules) == {"vpc", "msk", "rds"}
    for name, spec in modules.items():
        assert str(spec["version"])[0].isdigit(), f"module {name} is not pinned to an exact version"


def test_twelve_partitions_and_kafka_reliability_settings() -> None:
    variables = _blocks(_load("variables.tf"), "variable")
    assert variables["topic_partitions"]["default"] == 12
    msk = _blocks(_load("main.tf"), "module")["msk"]
    props = msk["configuration_server_properties"]
    assert _strip(props["num.partitions"]) == "var.topic_partitions"
    assert (props["min.insync.replicas"]) == 2 and (props["default.replication.factor"]) == 3
    assert (props["auto.create.topics.enable"]) is False
    assert (msk["number_of_broker_nodes"]) == 3


def test_encryption_in_transit_and_at_rest() -> None:
    modules = _blocks(_load("main.tf"), "module")
    msk = modules["msk"]
    assert (msk["encryption_in_transit_client_broker"]) == "TLS"
    assert (msk["encryption_in_transit_in_cluster"]) is True
    assert "aws_kms_key.data" in _strip(msk["encryption_at_rest_kms_key_arn"])
    rds = modules["rds"]
    assert (rds["storage_encrypted"]) is True
    assert (rds["manage_master_user_password"]) is True  # credentials live in Secrets Manager
    assert any(p["name"] == "rds.force_ssl" for p in rds["parameters"])


def test_no_database_or_kafka_ingress_from_the_internet() -> None:
    rules = _resources(_load("main.tf"), "aws_vpc_security_group_ingress_rule")
    assert len(rules) >= 4
    open_rules = []
    for name, spec in rules.items():
        cidr = _strip(spec.get("cidr_ipv4", ""))
        if cidr == "0.0.0.0/0" or cidr.startswith("each.value"):
            open_rules.append((name, _strip(spec["security_group_id"])))
    # the only rule that may admit the internet is the load balancer's listener
    assert open_rules == [("alb_listener", "aws_security_group.alb.id")]
    for name, spec in rules.items():
        if "msk" in name or "rds" in name:
            assert "referenced_security_group_id" in spec and "cidr_ipv4" not in spec, name


def test_checkov_finds_nothing_but_listed_suppressions() -> None:
    if not CHECKOV.is_file():
        pytest.fail("checkov is not installed: run `make setup` (it installs it into .cache/tools-venv)")
    out = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(TF.parent.parent),
            "--framework",
            "terraform",
            "--quiet",
            "--compact",
            "--config-file",
            str(TF.parent.parent / ".checkov.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
