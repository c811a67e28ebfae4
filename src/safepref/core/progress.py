"""One progress bar style for every long stage (tqdm on stderr, so stdout stays clean for --json)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", **kwargs: Any) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, **kwargs)
