"""``safepref data list | show NAME``."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from safepref.commands import print_json, print_table
from safepref.core import datasets as data


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The datasets bundled inside the package.", no_args_is_help=True)
    app.add_typer(group, name="data")

    @group.command("list")
    def list_datasets(as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout.")) -> None:
        """Name, kind, rows, license and source of every bundled dataset."""
        rows = [{"name": entry.name, "kind": entry.kind, "rows": len(entry.load()), "license": entry.license,
                 "source": entry.source} for entry in data.REGISTRY.values()]
        if as_json:
            print_json({"datasets": rows})
            return
        table = Table("name", "kind", "rows", "license", "source")
        for row in rows:
            table.add_row(row["name"], row["kind"], f"{row['rows']:,}", row["license"], row["source"])
        print_table(table)

    @group.command("show")
    def show(name: str, n: int = typer.Option(3, "-n", help="Rows to print.")) -> None:
        """Print the first rows of a bundled dataset as JSON, and where its SOURCE.md is."""
        entry = data.get_dataset(name)
        rows = entry.load()
        console = Console()
        console.print(f"[bold]{entry.name}[/]: {entry.description} — {len(rows):,} rows, {entry.license}, "
                      f"from {entry.source}; files: {', '.join(entry.files[:3])}{' …' if len(entry.files) > 3 else ''}")
        for row in rows[:n]:
            payload = row.model_dump(mode="json") if hasattr(row, "model_dump") else row
            console.print_json(json.dumps(payload, ensure_ascii=False))
