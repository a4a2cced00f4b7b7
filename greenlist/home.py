"""The one data directory where Greenlist writes everything (``GREENLIST_HOME``)."""

from __future__ import annotations

import os
from pathlib import Path


def greenlist_home() -> Path:
    """Return ``$GREENLIST_HOME`` (default ``~/.greenlist``), creating it if needed.

    Model caches, watermark keys, protected-content indexes, citation databases
    and the audit log all live below this directory.
    """
    home = Path(os.environ.get("GREENLIST_HOME") or Path.home() / ".greenlist").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def cache_dir(*parts: str) -> Path:
    """Return ``$GREENLIST_HOME/cache/<parts...>``, creating it if needed (exported models, embedding caches).

    Args:
        parts: Sub-folder names, e.g. ``("toxicity",)``.
    """
    path = greenlist_home().joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
