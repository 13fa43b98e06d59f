"""The store writer runs in its own process: what proves it, and what it keeps of the thread's guarantees
(a full pipe drops and counts, a process-group SIGTERM loses nothing acknowledged, a writer that dies
is noticed and replaced, and the channel carries JSON text only)."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from tests._wait import wait_until

from lmforge.errors import ConfigError
from lmforge.monitor import Monitor, MonitorSettings
from lmforge.monitor._channel import ChannelError, FrameReader, decode, encode, write_frame
from lmforge.monitor._writer_link import WriterProcess, encoder_to_preload

LABELS = ["negative", "positive"]
HANG = 30.0  # seconds: only bounds a hang, never a measurement


class _Evil:
    """Unpickling this runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def settings(url: str, **kw: Any) -> MonitorSettings:
    kw.setdefault("flush_interval_s", 0.05)
    return MonitorSettings(url=url, **kw)


def _gone(pid: int) -> bool:
    """The process ended (an orphan's zombie, not reaped yet, counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text(encoding="utf-8", errors="replace")


def test_predictions_are_written_by_another_process_that_loads_no_torch(
    store_url: str, make_records: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = make_records(30)
    with Monitor(settings(store_url), LABELS) as monitor:
        pid = monitor.writer_pid
        assert pid is not None and pid != os.getpid()

        def not_here(rows: Any) -> None:
            raise AssertionError("a prediction was inserted by the serving process")

        monkeypatch.setattr(monitor.store, "insert_predictions", not_here)  # this process's store
        monitor.record_many(records)
        monitor.flush(timeout=HANG)  # the writer is ready and has stored them: it imported all it needs
        assert monitor.written == 30 and monitor.failed == 0
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert any(b"lmforge.monitor._writer_process" in arg for arg in cmdline)
        maps = _maps(pid)
        assert "sqlalchemy" in maps and "libtorch" not in maps and "onnxruntime" not in maps
        assert monitor._writer._proc is not None and monitor._writer._proc.heavy == []
        assert {r["id"] for r in monitor.store.rows("predictions")} == {r.id for r in records}
        assert monitor.summary()["store"]["writer_pid"] == pid
    assert wait_until(lambda: _gone(pid), HANG)


def test_the_writer_runs_its_thread_pools_on_one_thread(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A drift check on torch's default pool (a thread per core) cost 3x the CPU of one thread on a busy
    # machine; the writer is background work, so its pools are one thread whatever the server's are.
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    with Monitor(settings(store_url), LABELS) as monitor:
        pid = monitor.writer_pid
        assert pid is not None
        env = dict(
            item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item
        )
        probe = subprocess.run(  # what torch makes of that environment (the writer imports it at its first check)
            [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
            env={k.decode(): v.decode() for k, v in env.items()}, capture_output=True, text=True, check=True,
        )
    assert {k: env[k.encode()] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")} == {
        "OMP_NUM_THREADS": b"1", "MKL_NUM_THREADS": b"1", "OPENBLAS_NUM_THREADS": b"1"
    }
    assert probe.stdout.strip() == "1"
    assert os.environ["OMP_NUM_THREADS"] == "4"  # the server's own environment is left as it was


def _logs(proc: WriterProcess, seen: list[str]) -> list[str]:
    """The writer's log messages so far (read from its channel into ``seen``)."""
    seen += [str(f["log"][1]) for f in proc.reader.read(0.1) if "log" in f]
    return seen


def test_encoder_to_preload_is_the_embedding_checks_when_a_reference_run_is_set(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert encoder_to_preload(MonitorSettings(url=url)) is None  # no reference: no drift check, no torch
    assert encoder_to_preload(MonitorSettings(url=url, reference_run="r")) == ["minilm-l6", 64]
    assert encoder_to_preload(MonitorSettings(url=url, reference_run="r", detectors=["oov-rate"])) is None
    options = {"embedding": {"model": "multilingual-e5-small", "max_length": 32}}
    assert encoder_to_preload(MonitorSettings(url=url, reference_run="r", detector_options=options)) == [
        "multilingual-e5-small", 32
    ]


@pytest.mark.slow  # torch's import and the encoder's load in the writer: seconds on an idle machine
def test_the_writer_loads_the_embedding_encoder_after_it_is_ready_not_at_its_first_check(tmp_path: Path) -> None:
    # torch's import and the encoder's load cost CPU-seconds once: beside the server's start, not in serving.
    proc = WriterProcess(settings(f"sqlite:///{tmp_path / 'm.db'}", reference_run=str(tmp_path)), "redact", LABELS,
                         None)
    try:
        proc.wait_ready()
        assert proc.heavy == []  # ready first: the load never delays the server's start
        said: list[str] = []
        assert wait_until(lambda: any("encoder minilm-l6 loaded" in m for m in _logs(proc, said)), 300)
        assert "libtorch" in _maps(proc.pid)  # before any prediction, so before any check
        write_frame(proc.fd_out, {"seq": 1, "p": [], "e": [], "stop": True})
        proc.close_input()
        assert proc.reap(120) == 0  # it ends cleanly, the load joined
    finally:
        proc.kill()
        proc.reap(10)


def test_a_stalled_writer_fills_the_pipe_then_the_buffer_drops_and_counts(
    store_url: str, make_records: Any
) -> None:
    n = 3000
    records = make_records(n, texts=[f"{i} " + "x" * 500 for i in range(n)])  # 3000 x ~600 B: over a pipe's 64 KiB
    with Monitor(settings(store_url, queue_size=100), LABELS) as monitor:
        pid = monitor.writer_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # the writer stops reading: the pipe fills, the sender blocks
        try:
            started = time.monotonic()
            for i in range(0, n, 10):
                monitor.record_many(records[i : i + 10])
                time.sleep(0.001)
            took = time.monotonic() - started
            assert wait_until(lambda: monitor.queue_depth == 100, HANG), monitor.queue_depth
        finally:
            os.kill(pid, signal.SIGCONT)
        monitor.flush(timeout=HANG)
        assert monitor.dropped > 0 and monitor.written == n - monitor.dropped, (monitor.dropped, monitor.written)
        assert monitor.store.count() == n - monitor.dropped
        assert took < HANG / 2  # record_many never waited for the stalled writer


@pytest.mark.parametrize("how", ["sigterm-to-the-group", "kill-9-the-server"])
def test_what_the_writer_received_is_stored_whatever_ends_the_server(how: str, tmp_path: Path) -> None:
    """Ctrl-C or systemd signal every process of the group: the writer must outlive the server's drain.
    A server killed outright cannot drain, but what its writer already holds is stored all the same."""
    db = tmp_path / "monitor.db"
    script = tmp_path / "serve.py"
    script.write_text(textwrap.dedent(f"""
        import signal, sys, time
        from lmforge.monitor import Monitor, MonitorSettings, PredictionRecord
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # as the server does: drain, then exit
        # The writer would hold a batch for 60 s: only the close at exit can write it.
        monitor = Monitor(MonitorSettings(url="sqlite:///{db}", flush_interval_s=60.0, batch_size=10_000),
                          ["negative", "positive"])
        monitor.start()
        while not monitor._writer._proc.ready:  # the writer has started (it ignores the signal from then on)
            time.sleep(0.01)
        monitor.record_many([PredictionRecord(id=f"p{{i}}", ts=time.time(), model="m", version="1",
                                              text=f"text {{i}}", label="positive", confidence=0.9)
                             for i in range(300)])
        while monitor.queue_depth:  # every record handed to the writer process
            time.sleep(0.01)
        print("recorded", monitor.writer_pid, flush=True)
        time.sleep(120)
    """), encoding="utf-8")
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            assert line.startswith("recorded"), line
            writer_pid = int(line.split()[1])
            time.sleep(0.3)  # the writer has read them into its 60 s batch
            if how == "sigterm-to-the-group":
                os.killpg(proc.pid, signal.SIGTERM)  # the server and its writer at once
                assert proc.wait(HANG) == 0
            else:
                os.kill(proc.pid, signal.SIGKILL)  # no drain, no atexit: the writer sees its input end
                assert proc.wait(HANG) == -signal.SIGKILL
                assert wait_until(lambda: _gone(writer_pid), HANG)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 300
    assert wait_until(lambda: _gone(writer_pid), HANG)


def test_a_writer_killed_is_noticed_counted_and_replaced(store_url: str, make_records: Any) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    held, after = make_records(30), make_records(5, t0=time.time() + 1)
    with Monitor(settings(store_url, flush_interval_s=60.0, batch_size=10_000), LABELS) as monitor:
        first = monitor.writer_pid
        assert first is not None
        monitor.record_many(held)  # the writer holds them in its 60 s batch
        assert wait_until(lambda: monitor.queue_depth == 0, HANG)
        time.sleep(0.3)
        os.kill(first, signal.SIGKILL)
        assert wait_until(lambda: monitor.writer_restarts == 1 and monitor.writer_pid not in (None, first), HANG)
        assert monitor.failed == 30 and monitor.written == 0  # what it held unwritten is counted, not hidden
        assert not any(r.id in monitor._writer.pending for r in held)
        monitor.record_many(after)
        monitor.flush(timeout=HANG)  # the marker makes the new writer store at once
        assert monitor.written == 5 and monitor.store.count() == 5
        registry = CollectorRegistry()
        registry.register(monitor.collector())
        text = generate_latest(registry).decode()
        assert "lmforge_monitor_writer_restarts_total 1.0" in text and "lmforge_monitor_write_failed_total 30.0" in text
        assert monitor.summary()["store"]["writer_restarts"] == 1


def test_the_writer_refuses_a_frame_that_is_not_json(store_url: str, make_records: Any, tmp_path: Path) -> None:
    with Monitor(settings(store_url), LABELS) as monitor:
        first = monitor.writer_pid
        proc = monitor._writer._proc
        assert proc is not None and wait_until(lambda: proc.ready, HANG)  # past its config: in its main loop
        # A pickle that would run a command if it were unpickled: the writer must not even try.
        pwned = tmp_path / "pwned"
        evil = pickle.dumps(_Evil(f"touch {pwned}"))
        os.write(proc.fd_out, evil + b"\n")
        assert wait_until(lambda: monitor.writer_restarts == 1, HANG)
        assert proc.proc.returncode == 3 and monitor.writer_pid != first
        assert not pwned.exists()
        monitor.record_many(make_records(3))
        monitor.flush(timeout=HANG)
        assert monitor.written == 3


def test_the_channel_carries_one_json_object_per_line_and_nothing_else() -> None:
    frame = {"seq": 1, "p": [["id", 1.5, "m", "1", "naïve 文本", "pos", 0.9, {"pos": 0.9}, 2.0, None]], "e": []}
    line = encode(frame)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and decode(line[:-1]) == frame
    for bad in (pickle.dumps({"seq": 1}), b"[1, 2]", b'{"x": NaN}', b"\xff\xfe", b'"text"'):
        with pytest.raises(ChannelError):
            decode(bad)
    with pytest.raises(ValueError):
        encode({"confidence": float("nan")})
    r, w = os.pipe()
    try:
        os.write(w, encode({"a": 1}) + encode({"b": 2})[:4])  # a frame and half of the next
        reader = FrameReader(r)
        assert reader.read(HANG) == [{"a": 1}]
        os.write(w, encode({"b": 2})[4:])
        assert reader.read(HANG) == [{"b": 2}]
        os.close(w)
        w = -1
        assert reader.read(HANG) == [] and reader.eof
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_store_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="in-memory SQLite database, which the store-writer process cannot share"):
        MonitorSettings(url=url)
