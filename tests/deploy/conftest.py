"""Static checks of the deployment files: this machine has no Docker engine and cannot
download Terraform providers, so the files are validated by parsing, schemas and linters."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose.yaml"
TF = REPO / "infra" / "terraform" / "aws"
COMPOSE_SCHEMA = REPO / ".cache" / "compose-spec" / "package" / "lib" / "compose-spec" / "schema" / "compose-spec.json"
CHECKOV = REPO / ".cache" / "tools-venv" / "bin" / "checkov"
