"""One module per command, each with a ``register(app)`` function; the output helpers they share are below."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table


def print_table(table: Table) -> None:
    """A table on stdout. Piped or redirected, it keeps its natural width (ignoring ``COLUMNS``), so that no name is
    cut to ``…`` or wrapped in two where ``grep`` or a script reads it; in a terminal it fits the window."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=Console(width=1_000_000).measure(table).maximum)
    console.print(table)


def print_json(payload: Any) -> None:
    """Exactly one JSON document on stdout (for ``--json``)."""
    print(json.dumps(payload, ensure_ascii=False))
