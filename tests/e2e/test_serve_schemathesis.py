"""Schemathesis against the real server's OpenAPI schema, with an admin key: valid and invalid requests
for every operation; no 5xx, invalid data rejected, and every response conforms to the schema (status
documented, content type and body valid).

Driven through schemathesis' hypothesis strategies rather than its pytest plugin: the plugin's lazy
fixture loader relies on a pytest internal (``Item._nodeid``) that pytest 9 removed.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests._runs import copy_run
from tests._serve import Server, create_keys, serve_process

schemathesis = pytest.importorskip("schemathesis")

# Per operation and generation mode: 2 x 12 x 13 operations, a few hundred cases in about a minute.
# LMFORGE_FUZZ_EXAMPLES=100 runs a deeper search.
EXAMPLES = int(os.environ.get("LMFORGE_FUZZ_EXAMPLES", "12"))
CONFIG = {
    "limits": {
        "max_texts": 8,
        "max_text_chars": 200,
        "max_in_flight": 64,
        "max_queued_texts": 512,
        "request_timeout_s": 60,
    },
    "batching": {"threads": 1},
    "registry_poll_s": 0,
    "drain_s": 0.5,
}


@pytest.fixture(scope="module")
def fuzzed_server(trained_full: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve-fuzz")
    run = copy_run(trained_full, tmp / "sentiment").root
    tokens = create_keys(tmp / "state")
    config = {
        **CONFIG,
        "monitor": {"url": f"sqlite:///{tmp}/monitor.db", "text_policy": "none", "drift_every": 1_000_000},
    }
    with serve_process(
        tmp, run, "--allow-unsigned", "--state", str(tmp / "state"), config=config, tokens=tokens
    ) as srv:
        yield srv


def test_api_conforms_to_its_schema(fuzzed_server: Server) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    # Every check but one: schema-valid requests can break rules no schema states (the run path must exist
    # on the server, a feedback label must be one of the model's), and 422 is the right answer to those.
    excluded = [CHECKS.get_one("positive_data_acceptance")]

    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {fuzzed_server.tokens['admin']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/predict",
        "GET /v1/models",
        "POST /v1/models/{name}/canary",
        "POST /v1/feedback",
        "GET /metrics",
    }
    statuses: collections.Counter[int] = collections.Counter()
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
            )
            def check(case: Any) -> None:
                response = case.call_and_validate(headers=headers, excluded_checks=excluded, timeout=60)
                statuses[response.status_code] += 1

            try:
                check()
            except Unsatisfiable:  # nothing can be invalid about an operation without input
                assert mode is GenerationMode.NEGATIVE, op.path
            except Exception:
                print(fuzzed_server.output()[-6000:])  # the server's side of a failure
                raise
    print("schemathesis cases by status:", dict(statuses))
    assert sum(statuses.values()) >= 200, statuses
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses[200] > 0 and statuses[422] > 0, statuses
