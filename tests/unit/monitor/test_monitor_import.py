"""`import lmforge.monitor` stays cheap: no web framework, database layer or ML library at import time."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO

HEAVY = (
    "torch",
    "transformers",
    "sqlalchemy",
    "fastapi",
    "starlette",
    "pydantic",
    "prometheus_client",
    "sklearn",
    "scipy",
    "pandas",
    "matplotlib",
    "cryptography",
)


def test_import_monitor_loads_no_heavy_module() -> None:
    code = textwrap.dedent(f"""
        import sys
        import lmforge.monitor
        from lmforge.monitor import Monitor, MonitorSettings, PredictionRecord, detector_names
        MonitorSettings(alerts=[{{"metric": "accuracy"}}], detectors=["oov-rate"])
        detector_names()
        print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r}))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout
