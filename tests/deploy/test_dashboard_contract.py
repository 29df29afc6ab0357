"""The dashboard's API types are generated from the committed OpenAPI schema; it must be the
schema the API serves now (regenerate with `sensorpipe openapi > dashboard/src/api/openapi.json`)."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import REPO


def test_committed_openapi_schema_is_current() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sensorpipe", "openapi"], capture_output=True, text=True, check=True, timeout=60
    )
    committed = json.loads((REPO / "dashboard" / "src" / "api" / "openapi.json").read_text())
    assert json.loads(out.stdout) == committed, "regenerate: sensorpipe openapi > dashboard/src/api/openapi.json"
