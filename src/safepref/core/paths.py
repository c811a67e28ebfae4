"""Where safepref keeps caches (prepared models, trained judges) and bundled data."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path


def safepref_home() -> Path:
    """Cache root: ``$SAFEPREF_HOME``, default ``~/.cache/safepref``."""
    home = Path(os.environ.get("SAFEPREF_HOME", Path.home() / ".cache" / "safepref"))
    home.mkdir(parents=True, exist_ok=True)
    return home


def bundled_data_dir() -> Path:
    """Folder of the datasets shipped inside the package (each with its SOURCE.md)."""
    return Path(str(resources.files("safepref") / "datafiles"))


def slug(text: str) -> str:
    """``text`` as one safe file-name part: every run of other characters than letters, digits, ``_.-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
