"""Without Optuna, `lmforge tune` says which extra to install (exit 2), before it prepares anything."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import yaml
from tests.conftest import REPO


def test_tune_without_optuna_names_the_tune_extra(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"tune": {"space": {"train.learning_rate": [1e-4, 3e-4]}}}), encoding="utf-8")
    out = tmp_path / "out"
    code = textwrap.dedent(f"""
        import sys

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "optuna":
                    raise ImportError("blocked")
                return None

        sys.meta_path.insert(0, Blocker())
        from lmforge.cli.__main__ import main
        sys.exit(main(["tune", {str(spec)!r}, "--out", {str(out)!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: Hyper-parameter search (lmforge tune) needs the Python package 'optuna', which is not installed. "
        "Install it with: pip install 'lmforge[tune]'"
    ]
    assert not out.exists()
