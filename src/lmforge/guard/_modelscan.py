"""Refuse unsafe model files before anything loads them, without ever unpickling.

Unpickling runs code chosen by whoever wrote the file, so lmforge loads weights only from
safetensors (or ONNX). :func:`scan_model_file` refuses:

- pickle-based formats by name: ``.bin .pt .pth .pkl .pickle .ckpt .joblib``;
- any file whose bytes are a pickle: protocol 2+ (``\\x80`` + version), protocol 0/1 (opcodes
  parsed statically with :mod:`pickletools`, which never imports or calls anything), a zip
  archive holding ``*.pkl`` members (``torch.save``), a legacy torch tar, a NumPy array of
  Python objects;
- malformed safetensors: header length past the end of the file or over 100 MB, a header
  that is not a JSON object (or repeats a key), unknown dtypes, sizes that do not match the
  shape, offsets out of range, overlapping or leaving gaps.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.guard._errors import UnsafeModelError

__all__ = ["PICKLE_SUFFIXES", "ModelFileReport", "scan_model_dir", "scan_model_file"]

PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"})
MAX_HEADER = 100 * 1024 * 1024
_PICKLE_WINDOW = 1 << 20
_MAX_ZIP_MEMBERS = 10_000
# Bits per element of each safetensors dtype (sub-byte float formats included).
_DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16,
    "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64, "F4": 4,
    "F6_E2M3": 6, "F6_E3M2": 6,
}
# Opcodes that give a protocol 0/1 pickle its power to import and call.
_CODE_OPS = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"}
_NPY_OBJECT = re.compile(r"""['"][|<>=]?O\d*['"]""")


@dataclass(frozen=True)
class ModelFileReport:
    """A file that passed the scan."""

    path: str
    format: str
    """safetensors, onnx, npy, zip, tar or other (JSON, text, tokenizer files...)."""
    size: int
    tensors: int = 0
    """Tensors declared in a safetensors header."""


def _refuse(path: Path, why: str) -> UnsafeModelError:
    return UnsafeModelError(
        f"Refused {path}: {why}. lmforge never loads pickle; use safetensors "
        "(model.save_pretrained(..., safe_serialization=True)) or ONNX."
    )


def _is_pickle(data: bytes) -> str | None:
    """Why ``data`` (the start of a file) is a pickle, or None. Parses opcodes only; runs nothing."""
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return f"it is a pickle (protocol {data[1]})"
    if not data:
        return None
    import pickletools  # only here: its import loads the pickle module, which nothing else in guard needs

    ops: set[str] = set()
    try:
        for opcode, _arg, _pos in pickletools.genops(io.BytesIO(data)):
            ops.add(opcode.name)
            if opcode.name == "STOP":
                return "it is a pickle (protocol 0/1)"
    except Exception:  # any parse error: not a (complete) pickle; genops only reads, never executes
        # Not a complete pickle in the window; one that parsed a long way and imports or
        # calls something is a pickle cut at the window.
        if len(data) >= _PICKLE_WINDOW and ops & _CODE_OPS and len(ops) > 3:
            return "it looks like a pickle (protocol 0/1 opcodes that import and call)"
        return None
    return None


def _scan_zip(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > _MAX_ZIP_MEMBERS:
                return f"a zip archive with {len(infos)} members (more than {_MAX_ZIP_MEMBERS})"
            for info in infos:
                if info.filename.endswith((".pkl", ".pickle")):
                    return f"a zip archive holding the pickle {info.filename!r} (the torch.save format)"
                if info.is_dir():
                    continue
                with zf.open(info) as member:
                    head = member.read(_PICKLE_WINDOW if info.file_size <= _PICKLE_WINDOW else 64)
                reason = _is_pickle(head)
                if reason is not None:
                    return f"a zip archive whose member {info.filename!r} {reason.removeprefix('it ')}"
                if head.startswith(b"\x93NUMPY") and _npy_object(head):
                    return f"a zip archive whose array {info.filename!r} holds Python objects (loading needs pickle)"
    except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError, EOFError) as exc:
        return f"a malformed zip archive ({exc.__class__.__name__})"
    return None


def _scan_tar(path: Path) -> str | None:
    try:
        with tarfile.open(path) as tf:
            for name in tf.getnames():
                if name.rsplit("/", 1)[-1] in ("pickle", "storages", "tensors") or name.endswith(".pkl"):
                    return f"a tar archive holding {name!r} (the legacy torch.save format, pickle-based)"
    except (tarfile.TarError, OSError, EOFError) as exc:
        return f"a malformed tar archive ({exc.__class__.__name__})"
    return None


def _npy_object(head: bytes) -> bool:
    """True when a .npy header declares Python objects (``descr`` with ``O``), which load via pickle."""
    if len(head) < 10:
        return True
    major = head[6]
    if major == 1:
        (hlen,), start = struct.unpack("<H", head[8:10]), 10
    else:
        if len(head) < 12:
            return True
        (hlen,), start = struct.unpack("<I", head[8:12]), 12
    header = head[start : start + hlen].decode("latin-1")
    return bool(_NPY_OBJECT.search(header)) or "descr" not in header


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})[0]
        raise ValueError(f"duplicate key {dup!r}")
    return dict(pairs)


def _check_safetensors(path: Path, size: int, max_header: int) -> int:
    """Validate a safetensors header and layout; returns the number of tensors."""
    if size < 8:
        raise _refuse(path, f"a safetensors file needs at least 8 bytes, this one has {size}")
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > max_header:
            raise _refuse(path, f"its safetensors header claims {n} bytes, over the {max_header}-byte limit")
        if 8 + n > size:
            raise _refuse(path, f"its safetensors header claims {n} bytes but the file has only {size - 8} after "
                                "the length field")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _refuse(path, f"its safetensors header is not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(header, dict):
        raise _refuse(path, f"its safetensors header is a JSON {type(header).__name__}, not an object")
    data_len = size - 8 - n
    meta = header.pop("__metadata__", None)
    if meta is not None and (not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values())):
        raise _refuse(path, "its safetensors __metadata__ must map names to strings")
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        what = f"tensor {name[:60]!r}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise _refuse(path, f"{what} must have exactly dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _DTYPE_BITS:
            raise _refuse(path, f"{what} has unknown dtype {str(dtype)[:20]!r}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise _refuse(path, f"{what} has a malformed shape")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)):
            raise _refuse(path, f"{what} has malformed data_offsets")
        begin, end = offsets
        if not 0 <= begin <= end <= data_len:
            raise _refuse(path, f"{what} has data_offsets [{begin}, {end}] outside the {data_len}-byte data section")
        bits = math.prod(shape) * _DTYPE_BITS[dtype]
        if bits % 8 or bits // 8 != end - begin:
            raise _refuse(path, f"{what} spans {end - begin} bytes but {dtype}{shape} needs {bits / 8:g}")
        spans.append((begin, end, name))
    cursor = 0
    for begin, end, name in sorted(spans):
        if begin < cursor:
            raise _refuse(path, f"tensor {name[:60]!r} overlaps the tensor before it (offset {begin} < {cursor})")
        if begin > cursor:
            raise _refuse(path, f"the data section has a {begin - cursor}-byte gap before tensor {name[:60]!r}")
        cursor = end
    if cursor != data_len:
        raise _refuse(path, f"the data section has {data_len - cursor} bytes after the last tensor")
    return len(spans)


def scan_model_file(path: str | Path, *, max_header: int = MAX_HEADER) -> ModelFileReport:
    """Check one file of a model folder without loading it.

    Args:
        path: The file.
        max_header: Largest safetensors header accepted, in bytes.

    Returns:
        What the file is, when it is safe to hand to a loader.

    Raises:
        UnsafeModelError: pickle-based or malformed (the message says which and why).
    """
    path = Path(path)
    if path.is_symlink():
        raise _refuse(path, "it is a symbolic link (never followed: scan the file it points at)")
    if not path.is_file():
        raise UnsafeModelError(f"Model file not found (or not a regular file): {path}")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise _refuse(path, f"'{suffix}' files are pickle-based")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(_PICKLE_WINDOW)
    reason = _is_pickle(head)
    if reason is not None:
        raise _refuse(path, reason)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        reason = _scan_zip(path)
        if reason is not None:
            raise _refuse(path, reason)
        return ModelFileReport(str(path), "zip", size)
    if len(head) > 262 and head[257:262] == b"ustar":
        reason = _scan_tar(path)
        if reason is not None:
            raise _refuse(path, reason)
        return ModelFileReport(str(path), "tar", size)
    if head.startswith(b"\x93NUMPY"):
        if _npy_object(head):
            raise _refuse(path, "it is a NumPy array of Python objects (loading it needs pickle)")
        return ModelFileReport(str(path), "npy", size)
    looks_safetensors = len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= size
    if suffix == ".safetensors" or looks_safetensors:
        return ModelFileReport(str(path), "safetensors", size, _check_safetensors(path, size, max_header))
    return ModelFileReport(str(path), "onnx" if suffix == ".onnx" else "other", size)


def _files_below(root: Path) -> list[Path]:
    """Every non-folder entry below ``root``, sorted; a symlinked folder is listed, never entered."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        out.extend(base / name for name in filenames)
        out.extend(base / name for name in dirnames if (base / name).is_symlink())
    return sorted(out)


def scan_model_dir(root: str | Path) -> list[ModelFileReport]:
    """Scan every file below ``root``; all refusals are reported together (symlinks are refused).

    Raises:
        UnsafeModelError: one or more files were refused (each named with its reason).
    """
    root = Path(root)
    if not root.is_dir():
        raise UnsafeModelError(f"Model folder not found: {root}")
    reports: list[ModelFileReport] = []
    problems: list[str] = []
    for path in _files_below(root):
        try:
            reports.append(scan_model_file(path))
        except UnsafeModelError as exc:
            problems.append(str(exc))
    if problems:
        head = f"{len(problems)} unsafe file(s) in {root}:\n" if len(problems) > 1 else ""
        raise UnsafeModelError(head + "\n".join(f"  - {p}" if head else p for p in problems))
    return reports
