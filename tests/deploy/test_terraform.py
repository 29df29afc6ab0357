"""infra/terraform/aws: formatted, documented, encrypted, and closed to the internet but for the ALB."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import hcl2
import pytest

from .conftest import CHECKOV, TF


def _load(name: str) -> dict[str, Any]:
    with open(TF / name) as f:
        return hcl2.load(f)  # type: ignore[no-any-return]


def _v(x: Any) -> Any:
    """python-hcl2 wraps attribute values in one-element lists; unwrap them."""
    while isinstance(x, list) and len(x) == 1:
        x = x[0]
    return x


def _strip(v: Any) -> str:
    return str(_v(v)).strip('"${}')


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
    variables = _load("variables.tf")["variable"]
    assert variables
    for block in variables:
        for name, spec in block.items():
            assert _v(spec.get("description")), f"variable {name} has no description"
            assert "type" in spec, f"variable {name} has no type"
            assert "default" in spec or name == "image", f"variable {name} has no default"


def test_versions_are_pinned() -> None:
    versions = _v(_load("versions.tf")["terraform"])
    providers = _v(versions["required_providers"])
    assert providers and all(_v(p).get("version") for p in providers.values())
    for block in _load("main.tf")["module"]:
        for name, spec in block.items():
            assert str(_v(spec["version"]))[0].isdigit(), f"module {name} is not pinned to an exact version"


def test_twelve_partitions_and_kafka_reliability_settings() -> None:
    variables = {k: v for b in _load("variables.tf")["variable"] for k, v in b.items()}
    assert _v(variables["topic_partitions"]["default"]) == 12
    msk = next(b["msk"] for b in _load("main.tf")["module"] if "msk" in b)
    props = _v(msk["configuration_server_properties"])
    assert _strip(props["num.partitions"]) == "var.topic_partitions"
    assert _v(props["min.insync.replicas"]) == 2 and _v(props["default.replication.factor"]) == 3
    assert _v(props["auto.create.topics.enable"]) is False
    assert _v(msk["number_of_broker_nodes"]) == 3


def test_encryption_in_transit_and_at_rest() -> None:
    main = _load("main.tf")
    msk = next(b["msk"] for b in main["module"] if "msk" in b)
    assert _v(msk["encryption_in_transit_client_broker"]) == "TLS"
    assert _v(msk["encryption_in_transit_in_cluster"]) is True
    assert "aws_kms_key.data" in _strip(msk["encryption_at_rest_kms_key_arn"])
    rds = next(b["rds"] for b in main["module"] if "rds" in b)
    assert _v(rds["storage_encrypted"]) is True
    assert _v(rds["manage_master_user_password"]) is True  # credentials live in Secrets Manager
    assert any(_v(p["name"]) == "rds.force_ssl" for p in rds["parameters"][0])


def test_no_database_or_kafka_ingress_from_the_internet() -> None:
    main = _load("main.tf")
    open_rules = []
    for block in main["resource"]:
        for rtype, items in block.items():
            if rtype != "aws_vpc_security_group_ingress_rule":
                continue
            for name, spec in items.items():
                cidr = _strip(spec.get("cidr_ipv4", ""))
                if cidr == "0.0.0.0/0" or cidr.startswith("each.value"):
                    open_rules.append((name, _strip(spec["security_group_id"])))
    # the only rule that may admit the internet is the load balancer's listener
    assert open_rules == [("alb_listener", "aws_security_group.alb.id")]
    for block in main["resource"]:
        for name, spec in block.get("aws_vpc_security_group_ingress_rule", {}).items():
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
