"""A user cache of models converted once from a packaged source (GGUF, pickle-free formats...).

Some packages ship weights in a format transformers cannot load fast or safely as is (a
quantized GGUF, a 4-bit file of their own). They are converted once into a
``save_pretrained`` folder under ``$LMFORGE_HOME/models/<name>`` (``~/.cache/lmforge`` when the
variable is unset) and loaded from there afterwards.

The folder records what it was built from (``lmforge_cache.json``: the sha256 of every source
file, the converter's version, and the size and sha256 of every output file). It is rebuilt when
a source or the converter changed, or when an output file is missing or has another size; a
build writes into a temporary sibling folder and renames it into place, so a crash or a
concurrent build never leaves a half-written model where a reader looks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from lmforge.errors import LmforgeError

logger = logging.getLogger(__name__)

__all__ = ["CACHE_META", "cache_root", "converted"]

CACHE_META = "lmforge_cache.json"
_CHUNK = 1 << 20


def cache_root() -> Path:
    """``$LMFORGE_HOME`` (default ``~/.cache/lmforge``)."""
    home = os.environ.get("LMFORGE_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "lmforge"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sources(files: Sequence[Path]) -> dict[str, str]:
    return {path.name: _sha256(path) for path in sorted(files)}


def _outputs(folder: Path) -> dict[str, dict[str, int | str]]:
    return {
        str(path.relative_to(folder)): {"size": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != CACHE_META
    }


def _is_current(folder: Path, sources: dict[str, str], version: str) -> bool:
    try:
        meta = json.loads((folder / CACHE_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("sources") != sources or meta.get("version") != version:
        return False
    outputs = meta.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return False
    for rel, info in outputs.items():
        path = folder / rel
        if not path.is_file() or not isinstance(info, dict) or path.stat().st_size != info.get("size"):
            return False
    return True


def converted(name: str, sources: Sequence[Path], version: str, build: Callable[[Path], None]) -> Path:
    """The cached ``save_pretrained`` folder of ``name``, built by ``build(folder)`` when needed.

    Args:
        name: the catalog name (the cache subfolder).
        sources: the packaged files the conversion reads; their sha256 keys the cache.
        version: the converter's version; bump it when ``build`` changes what it writes.
        build: writes the converted model into the (empty) folder it is given.

    Raises:
        LmforgeError: the conversion failed (nothing is left in the cache).
    """
    root = cache_root() / "models"
    target = root / name
    digests = _sources(sources)
    if _is_current(target, digests, version):
        return target
    root.mkdir(parents=True, exist_ok=True)
    logger.info("converting %s once into %s (later runs load it from there)", name, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        build(tmp)
        meta = {"name": name, "version": version, "sources": digests, "outputs": _outputs(tmp)}
        (tmp / CACHE_META).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}-old-", dir=root))
            target.rename(old / name)
            shutil.rmtree(old, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished the same build first; theirs is as good as ours.
            if not _is_current(target, digests, version):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except LmforgeError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LmforgeError(f"Converting {name} into {target} failed: {exc}") from exc
    return target
