"""The dashboard's API types are generated from the committed OpenAPI schema; it must be the
schema the API serves now (regenerate with `sensorpipe openapi > dashboard/src/api/openapi.json`)."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys

from .conftest import REPO


def test_committed_openapi_schema_is_current() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sensorpipe", "openapi"], capture_output=True, text=True, check=True, timeout=60
    )
    committed = json.loads((REPO / "dashboard" / "src" / "api" / "openapi.json").read_text())
    assert json.loads(out.stdout) == committed, "regenerate: sensorpipe openapi > dashboard/src/api/openapi.json"


FIRST_LOAD_GZIP_MAX = 250_000


def test_first_load_javascript_stays_under_250_kb_gzipped() -> None:
    """The scripts the built page loads before anything else (module scripts; the noModule
    polyfills are skipped by every browser that runs the dashboard), gzipped at level 9."""
    out = REPO / "dashboard" / "out"
    page = (out / "index.html").read_text()
    scripts = [
        m.group(2)
        for m in re.finditer(r"<script([^>]*)src=\"(/_next/[^\"]+\.js)\"", page)
        if "noModule" not in m.group(1)
    ]
    assert len(scripts) >= 3, f"the built page names too few scripts: {scripts}"
    total = sum(len(gzip.compress((out / s.lstrip("/")).read_bytes(), 9)) for s in scripts)
    assert total < FIRST_LOAD_GZIP_MAX, f"{total:,} bytes of first-load JavaScript, gzipped"
