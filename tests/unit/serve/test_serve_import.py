"""Importing the serving layer, the client and the CLI stays cheap: no web framework, database or model library."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

HEAVY = (
    "fastapi",
    "starlette",
    "pydantic",
    "sqlalchemy",
    "uvicorn",
    "httpx",
    "prometheus_client",
    "ray",
    "torch",
    "transformers",
    "onnxruntime",
)


def test_import_is_cheap() -> None:
    code = (
        "import sys\n"
        "import lmforge.serve, lmforge.client, lmforge.cli.__main__\n"
        "from lmforge.serve import ServeSettings, load_settings, source_overrides\n"
        "ServeSettings(); load_settings(None, port=9000)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
