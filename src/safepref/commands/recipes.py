"""``safepref recipes``: the bundled pair recipes (see ``safepref.pairs.recipes``)."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from safepref.commands import print_table
from safepref.pairs.recipes import list_recipes


def register(app: typer.Typer) -> None:
    @app.command("recipes", epilog="Example: safepref recipes --json")
    def recipes(as_json: bool = typer.Option(False, "--json")) -> None:
        """List the bundled pair recipes."""

        items = list_recipes()
        if as_json:
            print(json.dumps({"recipes": [r.model_dump(by_alias=True) | {"needs_scores": r.needs_scores}
                                          for r in items]}))
            return
        table = Table("name", "chosen", "rejected", "pairing", "needs RM", "description")
        for r in items:
            table.add_row(r.name, f"{r.chosen.select} of {'+'.join(r.chosen.sources)}",
                          f"{r.rejected.select} of {'+'.join(r.rejected.sources)}", r.pairing,
                          "yes" if r.needs_scores else "no", r.description)
        print_table(table)
