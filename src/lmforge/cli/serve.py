"""`lmforge serve RUN_OR_REGISTRY`: the HTTP API (micro-batched predictions, registry, API keys)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lmforge.cli._common import say

if TYPE_CHECKING:
    from lmforge.apps import Served

EXAMPLE = """examples:
  lmforge keys create ops --role admin                  # prints a token once
  lmforge serve runs/demo --public-key signing.key.pub  # serve a signed run on 127.0.0.1:8000
  lmforge serve runs/demo --allow-unsigned --port 9000  # an unsigned run (files still checked)
  lmforge serve .lmforge --monitor                      # the registry's active models; feedback, dashboard
  lmforge serve postgresql+psycopg://lm@db/lmforge --backend ray --replicas 2
  curl -H "Authorization: Bearer $TOKEN" -d '{"texts": ["lost my bag"]}' localhost:8000/v1/predict

RUN_OR_REGISTRY: a run directory (registered and activated as a version of --name), a state
folder holding registry.db, a registry database URL, or an app's directory (`lmforge bot build`'s,
`lmforge recommend train`'s) or spec (one with a watch: section), whose routes are added beside /v1/predict. Every setting can also come from
--config serve.yaml (see lmforge.serve.ServeSettings); flags override the file. SIGTERM turns
/readyz to 503 for the drain period, finishes in-flight requests, then exits."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a run or the registry over HTTP",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve text classification over HTTP: POST /v1/predict, the model registry "
        "under /v1/models, /healthz, /readyz, /metrics. Every route but the health checks needs an "
        "API key (`lmforge keys create`).",
    )
    p.add_argument("target", metavar="RUN_OR_REGISTRY", help="run directory, state folder or registry URL")
    p.add_argument("--config", help="YAML file of serve settings")
    p.add_argument("--host", default=None, help="interface to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: 8000)")
    p.add_argument(
        "--backend", choices=("local", "ray"), default=None, help="where the model runs (default: local)"
    )
    p.add_argument(
        "--replicas", type=int, default=None, help="Ray Serve replicas per model version (--backend ray)"
    )
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--state", dest="state_dir", default=None, help="state folder (default: ./.lmforge)")
    p.add_argument("--registry-url", default=None, help="registry database URL (default: STATE/registry.db)")
    p.add_argument(
        "--name", dest="model_name", default=None, help="model name for a served run (default: its folder)"
    )
    p.add_argument(
        "--variant", default=None, help="compressed variant of a served run, or fp32 (default: selected)"
    )
    p.add_argument(
        "--allow-unsigned",
        action="store_true",
        default=None,
        help="serve runs without a signature (their files are still checked against the manifest)",
    )
    p.add_argument(
        "--public-key", default=None, help="public key the runs are signed with ($LMFORGE_PUBLIC_KEY)"
    )
    p.add_argument(
        "--audit-log", default=None, help="audit log of admin actions (default: STATE/audit.jsonl)"
    )
    p.add_argument("--access-log", action="store_true", default=None, help="log every request (never bodies)")
    p.add_argument("--docs", action="store_true", default=None,
                   help="serve /docs (Swagger UI, assets served locally: works offline)")
    p.add_argument(
        "--monitor",
        action="store_true",
        help="record predictions and take feedback (POST /v1/feedback, "
        "/dashboard), stored in STATE/monitor.db unless the config's monitor section says otherwise",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmforge.apps import serving_for

    return serve_target(args, serving_for(args.target))


def serve_target(args: argparse.Namespace, served: Served | None) -> int:
    """Start the server for ``args`` (a serve verb's flags; one it lacks is unset) with ``served``'s app, if any."""
    from lmforge.serve import load_settings, run_server, source_overrides, with_monitor

    flags = {
        k: getattr(args, k, None)
        for k in (
            "host",
            "port",
            "backend",
            "replicas",
            "ray_address",
            "state_dir",
            "registry_url",
            "model_name",
            "variant",
            "allow_unsigned",
            "public_key",
            "audit_log",
            "access_log",
            "docs",
        )
    }
    if served is None:
        target = source_overrides(args.target)
    else:
        target = {"source": str(served.source)} if served.source is not None else {}
        if served.model_name is not None and flags["model_name"] is None:
            flags["model_name"] = served.model_name
    settings = load_settings(args.config, **target, **flags)
    if args.monitor:
        settings = with_monitor(settings)
    app = f", app {served.extension.name}" if served is not None else ""
    say(
        f"lmforge serve: http://{settings.host}:{settings.port} (backend {settings.backend}, registry "
        f"{settings.database_url.split('@')[-1]}{app})"
    )
    run_server(settings, [served.extension] if served is not None else [])
    return 0
