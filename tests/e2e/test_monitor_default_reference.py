"""`lmforge serve RUN --monitor`, as the README shows it: the served run is the drift reference.

No ``monitor.reference_run`` is configured; the startup log names the reference, and after
enough traffic ``/metrics`` carries drift series for the served version.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from tests._runs import NEG, POS, copy_run
from tests._serve import create_keys, serve_process

httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.slow


def test_serve_monitor_uses_the_served_run_as_its_drift_reference(trained_full: Path, tmp_path: Path) -> None:
    run = copy_run(trained_full, tmp_path / "sentiment").root
    state = tmp_path / "state"
    tokens = create_keys(state)
    config = {
        "registry_poll_s": 0,
        # Small windows so a test's worth of traffic triggers a check; no reference_run on purpose.
        "monitor": {
            "url": f"sqlite:///{state / 'monitor.db'}",
            "flush_interval_s": 0.05,
            "drift_every": 20,
            "drift_window": 40,
            "drift_min_interval_s": 0,
            "detectors": ["text-length-ks", "oov-rate"],
            "detector_options": {"text-length-ks": {"min_samples": 10}, "oov-rate": {"min_samples": 10}},
        },
    }
    with serve_process(tmp_path, run, "--monitor", "--allow-unsigned", "--state", str(state), config=config) as srv:
        headers = {"Authorization": f"Bearer {tokens['predict']}"}
        texts = POS + NEG
        for _ in range(3):
            reply = httpx.post(f"{srv.url}/v1/predict", json={"texts": texts}, headers=headers, timeout=60)
            assert reply.status_code == 200, reply.text
        deadline = time.monotonic() + 60
        body = ""
        while time.monotonic() < deadline:
            body = httpx.get(f"{srv.url}/metrics", headers=headers, timeout=10).text
            if "lmforge_monitor_drift_score{" in body:
                break
            time.sleep(0.5)
        series = re.findall(r'^lmforge_monitor_drift_score\{([^}]*)\} (\S+)$', body, flags=re.M)
        detectors = sorted(re.search(r'detector="([^"]+)"', labels).group(1) for labels, _ in series)
        assert detectors == ["oov-rate", "text-length-ks"], body[-3000:]
        assert all('model="sentiment"' in labels and 'version="1"' in labels for labels, _ in series)
    log = srv.output()
    assert f"drift reference is the served run {run}" in log
