"""One progress bar style for every long stage (tqdm on stderr, so stdout stays clean for --json)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", **kwargs: Any) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, **kwargs)


def announce(text: str) -> None:
    """One line between progress bars (a stage starting, what it is for), on stderr without breaking a bar."""
    tqdm.write(text, file=sys.stderr)
