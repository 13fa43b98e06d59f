"""tests/conftest.py's CI rule: with CI=true a skip fails (with its reason); without CI it stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import REPO

SKIPPING = """
import pytest


@pytest.fixture
def service():
    pytest.skip("no widget server (set WIDGET_URL)")


def test_passes():
    pass


def test_skips_in_its_body():
    pytest.skip("the widget extra is not installed")


def test_skips_in_a_fixture(service):
    pass


@pytest.mark.xfail(reason="a known bug, not a skip", strict=True)
def test_known_bug():
    raise AssertionError
"""

MODULE_SKIP = """
import pytest

pytest.importorskip("lmforge_no_such_module", reason="the gadget extra is not installed")


def test_never_collected():
    pass
"""

IN_CI = "skipped in CI (CI=true), where a skip is a failure: Skipped: "


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of tests that pass, skip (in the body, in a fixture, the whole module) and xfail."""
    folder = tmp_path_factory.mktemp("ci-skips")
    (folder / "test_skipping.py").write_text(SKIPPING, encoding="utf-8")
    (folder / "test_module_skip.py").write_text(MODULE_SKIP, encoding="utf-8")
    return folder


def run_pytest(folder: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """pytest on ``folder`` in a subprocess, tests/conftest.py loaded as a plugin (its hooks only matter)."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    cmd = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", "-rA"]
    return subprocess.run(
        [*cmd, "--continue-on-collection-errors", str(folder)],
        cwd=REPO,  # so that `tests.conftest` imports
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_in_ci_every_skip_fails_with_its_reason(suite: Path) -> None:
    proc = run_pytest(suite, "true")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "1 failed, 1 passed, 1 xfailed, 2 errors" in out, out
    summary = [line for line in out.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    assert len(summary) == 3, out
    for kind, test, reason in (
        ("FAILED", "test_skipping.py::test_skips_in_its_body", "the widget extra is not installed"),
        ("ERROR", "test_skipping.py::test_skips_in_a_fixture", "no widget server (set WIDGET_URL)"),
        ("ERROR", "test_module_skip.py", "the gadget extra is not installed"),  # the whole module
    ):
        assert any(
            line.startswith(kind) and f"{test} - " in line and IN_CI + reason in line for line in summary
        ), (test, out)


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_a_skip_is_a_skip(suite: Path, ci: str | None) -> None:
    proc = run_pytest(suite, ci)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 3 skipped, 1 xfailed" in proc.stdout, proc.stdout
    assert "skipped in CI" not in proc.stdout
