"""What every benchmark shares: machine facts, child processes with their peak RSS, result files.

Each benchmark runs its contenders one after another in child processes (never in
parallel: they would share the same cores) and reads each child's own peak resident set
size from ``os.wait4``, so one contender's memory never leaks into another's number.

A result file is one JSON object::

    benchmark, mode, date, machine, versions, parameters, results, ratios,
    targets: [{name, value, goal, op, threshold, met}], summary: [table rows], notes

``bench/report.py`` turns every result file into one Markdown table.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

GB = 1e9  # targets say "GB": 10^9 bytes
_LOAD_AT_START = os.getloadavg()  # other work on the machine skews every timing; the result records it


def child_env() -> dict[str, str]:
    """Environment of child processes: offline (lmforge never needs a hub), unbuffered output."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    return env


def run_child(cmd: list[str], *, timeout: float | None = None, log: Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` to completion; return its exit code, wall seconds and peak RSS in bytes.

    The peak RSS is the child's own ``ru_maxrss`` (from ``wait4``; it covers the
    descendants the child waited for), not a maximum over every child this process ran.
    Output goes to ``log`` when given, else to this process's stdout/stderr.
    """
    out = open(log, "w", encoding="utf-8") if log else None  # closed below
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=child_env(), cwd=REPO, stdout=out, stderr=subprocess.STDOUT if out else None)
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if timer:
                timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen consistent
    finally:
        if out:
            out.close()
    return {
        "returncode": proc.returncode,
        "wall_seconds": round(wall, 2),
        "peak_rss_bytes": int(usage.ru_maxrss) * 1024,  # Linux reports kilobytes
        "timed_out": bool(timeout and wall >= timeout and proc.returncode != 0),
    }


LMFORGE = Path(sys.executable).parent / "lmforge"  # the CLI of the interpreter running the benchmark


def lmforge(*args: str, timeout: float = 1800) -> None:
    """Run ``lmforge ARGS`` to completion (output to this process's); raise if it fails."""
    log(f"lmforge {' '.join(args[:2])}")
    stats = run_child([str(LMFORGE), *args], timeout=timeout)
    if stats["returncode"] != 0:
        raise RuntimeError(f"lmforge {args[0]} failed with exit code {stats['returncode']}")


def tiny_run(workdir: Path, *, max_examples: int, max_steps: int) -> Path:
    """``WORKDIR/run``: airline-tweets cut to ``max_examples`` rows, trained ``max_steps`` steps (quick modes)."""
    run = workdir / "run"
    lmforge("run", "--out", str(run), "--set", f"data.max_examples={max_examples}", "--set",
            f"train.max_steps={max_steps}", "--set", "model.max_length=64", "--no-progress")
    return run


def run_worker(script: str, role: str, job: dict[str, Any], workdir: Path, *, tag: str | None = None,
               timeout: float | None = None) -> dict:
    """Run ``script --worker ROLE --job FILE`` in a child; return its result JSON plus the process stats.

    ``tag`` names the job and result files in ``workdir`` (default: the role).

    Raises:
        RuntimeError: the worker failed; the message names it and its exit code.
    """
    job_path = workdir / f"job-{tag or role}.json"
    result_path = workdir / f"result-{tag or role}.json"
    job = {**job, "result_path": str(result_path)}
    job_path.write_text(json.dumps(job, indent=2), encoding="utf-8")
    stats = run_child([sys.executable, script, "--worker", role, "--job", str(job_path)], timeout=timeout)
    if stats["returncode"] != 0 or not result_path.exists():
        why = "timed out" if stats["timed_out"] else f"exit code {stats['returncode']}"
        raise RuntimeError(f"worker '{tag or role}' failed ({why}); its output is above.")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    result["process"] = stats
    return result


def read_job(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_worker_result(job: dict[str, Any], result: dict[str, Any]) -> None:
    Path(job["result_path"]).write_text(json.dumps(result, indent=2), encoding="utf-8")


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, bf16 support and torch's thread count."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        # 1-minute load average when the benchmark started and when it ended: above the core
        # count, other processes were competing for the CPU and the timings are pessimistic.
        "load_average_1m": {"start": round(_LOAD_AT_START[0], 2), "end": round(os.getloadavg()[0], 2)},
    }
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gb"] = round(pages * size / GB, 1)
    except (OSError, ValueError):
        pass
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch_threads"] = None
    return info


def versions() -> dict[str, str]:
    from lmforge.pipeline import versions as lmforge_versions

    out = lmforge_versions()
    try:
        import sklearn

        out["scikit-learn"] = sklearn.__version__
    except ImportError:
        pass
    return out


def target(name: str, value: float | None, op: str, threshold: float, unit: str = "") -> dict[str, Any]:
    """A target and whether ``value`` meets it (``op`` is ``>=`` or ``<=``; None never meets)."""
    met = value is not None and (value >= threshold if op == ">=" else value <= threshold)
    return {"name": name, "value": value, "op": op, "threshold": threshold, "unit": unit,
            "goal": f"{op} {threshold:g}{unit}", "met": bool(met)}


def default_out(name: str, quick: bool) -> Path:
    """``bench/results/NAME.json`` (full) or ``NAME-quick.json``, so a quick run never overwrites a full one."""
    return RESULTS / f"{name}{'-quick' if quick else ''}.json"


def write_result(out: Path, benchmark: str, *, quick: bool, peer: str, parameters: dict, results: dict,
                 ratios: dict, targets: list[dict], summary: list[dict], notes: list[str]) -> dict[str, Any]:
    """Assemble the result object, write it to ``out`` and print its Markdown table.

    ``summary`` rows are ``{metric, lmforge, peer, ratio}``; ``peer`` names the peer's column.
    """
    doc = {
        "benchmark": benchmark,
        "mode": "quick" if quick else "full",
        "peer": peer,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "parameters": parameters,
        "results": results,
        "ratios": ratios,
        "targets": targets,
        "all_targets_met": all(t["met"] for t in targets),
        "summary": summary,
        "notes": notes,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    from report import render  # bench/ is on sys.path when a script runs

    print(render([doc]))
    print(f"\nwrote {out}")
    return doc


def log(message: str) -> None:
    """Progress for the person running the benchmark (stderr, so stdout stays the table)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)



def leave_workdir(workdir: Path, keep: bool) -> None:
    """At a benchmark's end: keep its temporary folder (``--keep``, path logged) or remove it."""
    if keep:
        log(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
