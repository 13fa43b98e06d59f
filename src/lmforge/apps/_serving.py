"""How ``lmforge serve`` finds the application behind a directory: each app that serves says so here.

An app package that can be served defines ``serving(path) -> Served | None``: a :class:`Served`
when ``path`` is one of its directories (a bot directory, a recommender directory, ...) or spec
files (a spec with a ``watch:`` section), else None; ``path`` may be a file, so an app that serves
directories checks that it is one. :func:`serving_for` asks the apps of :data:`SERVED_APPS` in turn; ``lmforge serve`` then
serves ``Served.source`` (a run, registered and activated as the classification/generation model,
or None for an app without one) with ``Served.extension``'s routes beside the server's own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lmforge.serve import ServeExtension

__all__ = ["SERVED_APPS", "Served", "serving_for"]

SERVED_APPS: tuple[str, ...] = ("lmforge.apps.watch", "lmforge.apps.recommend", "lmforge.apps.support")
"""The app packages asked, in order, whether a directory is theirs (``serving(path)``)."""


@dataclass(frozen=True)
class Served:
    """What ``lmforge serve`` runs for an app's directory."""

    extension: ServeExtension
    source: Path | None = None
    """The run served under ``/v1/predict`` (or ``/v1/generate``) too, e.g. the bot's intent run; None: none."""
    model_name: str | None = None
    """The registry name of ``source`` (default: the server's, from its folder name)."""


def serving_for(target: str) -> Served | None:
    """The app that serves the directory or file ``target``, or None when it is no app's (a run, a state
    folder, a URL)."""
    if "://" in target:
        return None
    path = Path(target).expanduser()
    if not path.exists():
        return None
    for name in SERVED_APPS:
        served: Served | None = importlib.import_module(name).serving(path)
        if served is not None:
            return served
    return None
