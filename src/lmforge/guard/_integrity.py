"""What verification reads, and proof that it is still what a loader reads next.

:func:`run_file_problems` checks a run's files against ``manifest.files``: every listed file by
sha256, every file the manifest does not list, and every symlink or special file (FIFO,
socket, device) anywhere outside ``logs/`` and ``checkpoints/``. A symlink is never followed:
a linked folder such as ``compressed/x -> /elsewhere`` would otherwise be loadable but neither
hashed nor scanned. Inside the folders a model loads from (``model/`` and each
``compressed/<variant>/``) a hidden file counts as unlisted too.

Verifying and then loading reads every file twice, and a file replaced in between would be
loaded unverified. :class:`FileStamps` closes that gap without a second copy of the weights
in memory: verification hashes each file through one open descriptor and records the file's
stamp (device, inode, size, mtime and ctime, from ``fstat`` on that descriptor), and stamps the
model folders before it lists them. After the backend has loaded (and copied the weights into
memory of its own), :meth:`FileStamps.changed` compares every stamp with the file on disk. A
rename over a file gives a new inode; writing, truncating or adding and removing folder
entries moves the ctime, which no user can set back (``utime`` changes the mtime and stamps the
ctime with *now*), so even a file swapped and swapped back is caught. If nothing changed, the
bytes the backend read are the bytes that were hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from lmforge.rundir import COMPRESSED, MANIFEST, MODEL, RunDir

__all__ = ["FileStamp", "FileStamps", "file_stamp", "in_model_folder", "run_file_problems"]

_NO_FOLLOW = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


class FileStamp(NamedTuple):
    """One version of a file or folder on disk (what ``lstat`` says about it)."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


def _stamp(st: os.stat_result) -> FileStamp:
    return FileStamp(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_stamp(path: str | Path) -> FileStamp | None:
    """The stamp of ``path`` itself (a symlink is not followed); None when nothing is there."""
    try:
        return _stamp(os.lstat(path))
    except (FileNotFoundError, NotADirectoryError):
        return None


class FileStamps:
    """Stamps of files as they were hashed (and of folders as they were listed), below ``root``.

    Args:
        root: the folder the recorded paths are named relative to.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.stamps: dict[str, FileStamp] = {}
        self.unreadable: dict[str, str] = {}
        """Files that could not be opened as regular files, with the reason."""

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:  # outside the root: recorded by its full path
            return str(path)

    def hash(self, path: str | Path) -> str:
        """sha256 of ``path``, read through one descriptor that never follows a symlink; records its stamp.

        Returns ``""`` (which matches no digest) for a file that is gone, a symlink or not a
        regular file by the time it is opened; :attr:`unreadable` says why.
        """
        path = Path(path)
        rel = self._rel(path)
        try:
            fd = os.open(path, _NO_FOLLOW)
        except OSError as exc:
            self.unreadable[rel] = exc.strerror or type(exc).__name__
            return ""
        with open(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                self.unreadable[rel] = "not a regular file"
                return ""
            self.stamps[rel] = _stamp(st)
            digest = hashlib.sha256()
            while block := fh.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    def add(self, path: str | Path) -> None:
        """Record the stamp of ``path`` as it is now (a folder: before its entries are listed)."""
        path = Path(path)
        stamp = file_stamp(path)
        if stamp is not None:
            self.stamps[self._rel(path)] = stamp

    def changed(self, skip: Iterable[str] = ()) -> list[str]:
        """Every recorded path whose stamp differs now (removed, replaced, written to, entries changed).

        Args:
            skip: relative paths (files or folders, with what is below them) to leave out: what
                a stage wrote itself.
        """
        skipped = tuple(s.rstrip("/") for s in skip)
        out = []
        for rel, stamp in self.stamps.items():
            if any(rel == s or rel.startswith(s + "/") for s in skipped):
                continue
            if file_stamp(self.root / rel) != stamp:
                out.append(rel)
        return out


def in_model_folder(rel: str) -> bool:
    """True for a path in a folder a model loads from: ``model/``, ``compressed/<variant>/`` (not hidden)."""
    parts = rel.split("/")
    if parts[0] == MODEL:
        return len(parts) >= 2
    return parts[0] == COMPRESSED and len(parts) >= 3 and not parts[1].startswith(".")


def _expected(manifest_bytes: bytes) -> tuple[dict[str, str], list[str]]:
    """The ``files`` table of a manifest, and what is wrong with it."""
    try:
        manifest = json.loads(manifest_bytes)
    except (ValueError, UnicodeDecodeError):
        return {}, [f"{MANIFEST} is not valid JSON"]
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict):
        return {}, [f"{MANIFEST} has no 'files' table of sha256 digests"]
    problems: list[str] = []
    expected: dict[str, str] = {}
    for rel, digest in listed.items():
        parts = PurePosixPath(rel).parts if isinstance(rel, str) else ()
        if not parts or rel.startswith("/") or "\\" in rel or ".." in parts or not isinstance(digest, str):
            problems.append(f"{MANIFEST} lists a malformed entry {str(rel)[:80]!r}")
            continue
        expected[rel] = digest
    return expected, problems


def _links_and_hidden(run: RunDir, stamps: FileStamps | None) -> tuple[list[str], set[str]]:
    """Symlinks, special files and hidden files in model folders; links and special files by path."""
    problems: list[str] = []
    odd: set[str] = set()
    if stamps is not None:
        for folder in (run.model_dir, run.compressed_dir):
            stamps.add(folder)
    for rel, kind in run.walk():
        if kind == "symlink":
            odd.add(rel)
            try:
                target = os.readlink(run.root / rel)
            except OSError:
                target = "?"
            problems.append(f"symlink: {rel} -> {target} (a run may hold no symlinks: what one points at is "
                            "neither hashed nor scanned; copy it into the run)")
        elif kind == "other":
            odd.add(rel)
            problems.append(f"not a regular file: {rel} (a FIFO, socket or device)")
        elif kind == "dir" and stamps is not None and rel.split("/")[0] in (MODEL, COMPRESSED):
            stamps.add(run.root / rel)  # before walk() lists it: an entry added later changes this stamp
        elif kind == "file" and in_model_folder(rel) and any(p.startswith(".") for p in rel.split("/")):
            problems.append(f"extra file: {rel} (hidden, so not in the manifest; models load only listed files)")
    return problems, odd


def run_file_problems(
    run: RunDir, manifest_bytes: bytes, stamps: FileStamps | None = None
) -> tuple[list[str], int]:
    """Symlinks, special files, and tampered, missing, unreadable or unlisted files, against ``manifest.files``.

    Args:
        run: the run directory.
        manifest_bytes: the manifest as read once by the caller (what a signature covers).
        stamps: records the stamp of every file hashed and every model folder, when given.

    Returns:
        The problems (each naming its file), and how many listed files were checked.
    """
    expected, problems = _expected(manifest_bytes)
    if not expected and problems:
        return problems, 0
    link_problems, odd = _links_and_hidden(run, stamps)
    problems.extend(link_problems)
    pinned = stamps if stamps is not None else FileStamps(run.root)
    actual = run.file_hashes(pinned.hash)
    for rel in sorted(expected):
        if any(rel == o or rel.startswith(o + "/") for o in odd):
            continue  # named above as a symlink (or below one) or a special file
        if rel in pinned.unreadable:
            problems.append(f"unreadable file: {rel} ({pinned.unreadable[rel]})")
        elif rel not in actual:
            problems.append(f"missing file: {rel}")
        elif actual[rel] != expected[rel]:
            problems.append(f"tampered file: {rel} (sha256 differs from the manifest)")
    problems.extend(f"extra file: {rel} (not in the manifest)" for rel in sorted(set(actual) - set(expected)))
    return problems, len(expected)
