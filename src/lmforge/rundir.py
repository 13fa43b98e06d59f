"""The run directory: the one module that knows its layout.

Every stage reads the artifacts of the stage before it through :class:`RunDir` and writes
its own through :meth:`RunDir.stage`, which builds the stage's folder under a temporary
name and renames it into place only when the stage completed: a failed or interrupted
stage leaves the previous, complete folder (or none) behind, never a half-written one.

Layout::

    <root>/
      manifest.json     resolved spec, versions, data fingerprint, metrics, sha256 of every file
      spec.yaml         the resolved spec
      data/             train/val/test.jsonl, labels.json, data_report.json, *.png
      model/            save_pretrained folder (safetensors) + labels.json, or a PEFT adapter
      checkpoints/      checkpoint-<step>/ (atomic; newest complete one wins on resume)
      eval/             metrics.json, confusion.png, calibration.png, errors.jsonl, report.html
      compressed/       <variant>/ (model.onnx or model.safetensors + tokenizer, variant.json),
                        selected (pointer to the variant predict/serve load), baseline.json,
                        compression_report.md, tradeoff.png
      signature.json    Ed25519 signature over manifest.json (``lmforge sign``)
      logs/             TensorBoard events, train.log         MODEL_CARD.md
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from lmforge.errors import ConfigError, RunDirError

__all__ = [
    "ADAPTER_CONFIG", "BASELINE", "COMPRESSED", "FP32", "LABELS", "MANIFEST", "MODEL", "MODEL_META",
    "ONNX_FILE", "PRUNING", "SELECTED", "SPLITS", "VARIANT_META", "WEIGHTS", "RunDir", "atomic_open",
    "atomic_write_json", "atomic_write_text", "fsync_tree", "is_adapter_dir", "read_json", "read_labels",
    "read_split", "sha256_file",
]

# -- the layout: every file and folder name another module needs -----------------------------
MANIFEST = "manifest.json"
MODEL = "model"
"""The trained model's folder: full weights (``model.safetensors``) or a PEFT adapter."""
COMPRESSED = "compressed"
"""One sub-folder per compressed variant, plus ``selected`` and ``baseline.json``."""
SELECTED = "selected"
"""JSON pointer ``{"variant", "path", "reason", ...}`` to the variant predict and serve load."""
BASELINE = "baseline.json"
FP32 = "fp32"
"""Name of the uncompressed reference variant: the run's own model in ``model/``."""
MODEL_META = "lmforge_model.json"
"""Sidecar of every model folder: ``{method, base_model, max_length, labels, format, ...}``."""
VARIANT_META = "variant.json"
"""A compressed variant's measurements; a folder under ``compressed/`` without it is no variant."""
LABELS = "labels.json"
ADAPTER_CONFIG = "adapter_config.json"
WEIGHTS = "model.safetensors"
ONNX_FILE = "model.onnx"
PRUNING = "pruning.json"
"""Per-layer kept heads and FFN neurons of a structurally pruned variant."""
SPLITS = ("train", "val", "test")
_SPEC = "spec.yaml"
_PREPARE_HINT = "Run `lmforge prepare` (or `lmforge run`) first to create the data splits."
# Files that describe the run rather than belong to it; they are not hashed into the manifest.
_UNHASHED = {MANIFEST, "signature.json"}
# Transient or derived folders left out of the file hashes.
_UNHASHED_DIRS = {"checkpoints", "logs"}


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | Path, *, newline: str | None = None) -> Iterator[TextIO]:
    """A UTF-8 text file to write ``path`` through: a temporary sibling, fsynced and renamed on success.

    On an exception the temporary file is removed and whatever was at ``path`` stays untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as fh:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; keep the usual mode
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, fsync and rename."""
    with atomic_open(path) as fh:
        fh.write(text)


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _kind(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return "symlink"
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "file" if entry.is_file(follow_symlinks=False) else "other"


def fsync_tree(root: Path) -> None:
    """Flush every file below ``root`` to disk (before it is renamed into place)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _fsync_dir(Path(dirpath))


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class RunDir:
    """Paths and atomic writes of one run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def spec_path(self) -> Path:
        return self.root / _SPEC

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def model_dir(self) -> Path:
        return self.root / MODEL

    @property
    def model_meta_path(self) -> Path:
        return self.model_dir / MODEL_META

    @property
    def compressed_dir(self) -> Path:
        return self.root / COMPRESSED

    @property
    def selected_path(self) -> Path:
        return self.compressed_dir / SELECTED

    def variant_dir(self, name: str) -> Path:
        """The folder of variant ``name``: ``model/`` for ``fp32``, else ``compressed/<name>/``."""
        return self.model_dir if name == FP32 else self.compressed_dir / name

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def model_card_path(self) -> Path:
        return self.root / "MODEL_CARD.md"

    def split_path(self, split: str) -> Path:
        """Prepared split file (``train``, ``val`` or ``test``)."""
        return self.data_dir / f"{split}.jsonl"

    @property
    def labels_path(self) -> Path:
        return self.data_dir / LABELS

    # -- checks --------------------------------------------------------------------------
    def require(self, relpath: str, *, hint: str) -> Path:
        """Return ``root/relpath`` or raise :class:`RunDirError` saying which command makes it."""
        path = self.root / relpath
        if not path.exists():
            if not self.root.exists():
                raise RunDirError(f"Run directory {self.root} does not exist. {hint}")
            raise RunDirError(f"{self.root} has no {relpath}. {hint}")
        return path

    # -- writing -------------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Path]:
        """Build ``root/name`` in a temporary sibling folder; rename it into place on success.

        On an exception the temporary folder is removed and whatever was at ``root/name``
        before stays untouched.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.", suffix=".tmp"))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the final folder keeps the usual mode
        try:
            yield tmp
            fsync_tree(tmp)
            final = self.root / name
            if final.exists():
                old = self.root / f".{name}.old"
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
            _fsync_dir(self.root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- manifest ------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any]:
        """The manifest, or an empty dict when the run has none yet."""
        if not self.manifest_path.exists():
            return {}
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunDirError(f"{self.manifest_path} is not valid JSON ({exc}); the run directory is damaged.") from None
        if not isinstance(data, dict):
            raise RunDirError(f"{self.manifest_path} must hold a JSON object; the run directory is damaged.")
        return data

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Merge top-level ``fields`` into the manifest, re-hash every file and write it atomically."""
        manifest = self.read_manifest()
        manifest.setdefault("created", _now())
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(manifest.get(key), dict):
                manifest[key] = {**manifest[key], **value}
            else:
                manifest[key] = value
        manifest["updated"] = _now()
        manifest["files"] = self.file_hashes()
        atomic_write_json(self.manifest_path, manifest)
        return manifest

    def walk(self) -> Iterator[tuple[str, str]]:
        """``(relative path, kind)`` of everything below the root but ``checkpoints/`` and ``logs/``.

        ``kind`` is ``dir``, ``file``, ``symlink`` or ``other`` (a FIFO, socket or device). A
        symlink is never followed, whatever it points at; hidden entries are included.
        """
        pending = [""] if self.root.is_dir() and not self.root.is_symlink() else []
        while pending:
            rel_dir = pending.pop()
            with os.scandir(self.root / rel_dir) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if not rel_dir and entry.name in _UNHASHED_DIRS:
                    continue
                kind = _kind(entry)
                yield rel, kind
                if kind == "dir":
                    pending.append(rel)

    def file_hashes(self, hasher: Callable[[Path], str] = sha256_file) -> dict[str, str]:
        """sha256 of every artifact below the root, by relative path (sorted).

        An artifact is a regular file outside ``checkpoints/`` and ``logs/``, not hidden, and not
        ``manifest.json`` / ``signature.json``; symlinks are not followed (so not hashed).

        Args:
            hasher: hashes one file (verification passes one that also records what it read).
        """
        out: dict[str, str] = {}
        for rel, kind in self.walk():
            if kind != "file" or rel in _UNHASHED or any(p.startswith(".") for p in rel.split("/")):
                continue  # hidden: temporary stage folders and files
            out[rel] = hasher(self.root / rel)
        return dict(sorted(out.items()))


# -- readers of what the stages wrote -------------------------------------------------------
def _as_rundir(run: RunDir | str | Path) -> RunDir:
    return run if isinstance(run, RunDir) else RunDir(run)


def read_json(path: str | Path, *, hint: str) -> Any:
    """The JSON value in ``path``; a damaged file raises :class:`RunDirError` ending in ``hint``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path} is not valid JSON ({exc}); {hint}") from None


def _is_labeled(record: Any) -> bool:
    return isinstance(record, dict) and all(isinstance(record.get(key), str) for key in ("text", "label"))


def read_split(run: RunDir | str | Path, split: str, *, valid: Callable[[Any], bool] = _is_labeled,
               expected: str = '{"text": str, "label": str}') -> list[dict[str, Any]]:
    """The records of a prepared split (``train``, ``val`` or ``test``): ``{"text", "label", ...}``,
    or the shape ``valid`` accepts (``expected`` describes it; a generative run's examples).

    Raises:
        ConfigError: ``split`` is not one of :data:`SPLITS`.
        RunDirError: the split is missing (run ``lmforge prepare``) or has malformed lines (five named).
    """
    run = _as_rundir(run)
    if split not in SPLITS:
        raise ConfigError(f"Unknown split '{split}'. Available: {', '.join(SPLITS)}.")
    path = run.split_path(split)
    run.require(path.relative_to(run.root).as_posix(), hint=_PREPARE_HINT)
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"line {lineno}: not JSON ({exc.msg})")
                continue
            if valid(record):
                records.append(record)
            else:
                problems.append(f"line {lineno}: expected {expected}, got {line.strip()[:80]!r}")
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise RunDirError(f"{path} has {len(problems)} malformed lines: {shown}{more}. {_PREPARE_HINT}")
    return records


def read_labels(run: RunDir | str | Path) -> list[str]:
    """The sorted label names of a prepared run (``data/labels.json``).

    Raises:
        RunDirError: the run has no ``labels.json`` (run ``lmforge prepare``) or it is damaged.
    """
    run = _as_rundir(run)
    path = run.labels_path
    run.require(path.relative_to(run.root).as_posix(), hint=_PREPARE_HINT)
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))["labels"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        labels = None
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise RunDirError(f'{path} must hold {{"labels": [names...]}}; the run directory is damaged. {_PREPARE_HINT}')
    return labels


def is_adapter_dir(path: str | Path) -> bool:
    """True when a model folder holds a PEFT adapter rather than full weights."""
    return (Path(path) / ADAPTER_CONFIG).is_file()
