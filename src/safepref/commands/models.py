"""``safepref models list | verify | prepare``."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from safepref.commands import print_json, print_table
from safepref.core.errors import InputError
from safepref.models import loading as models


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The bundled offline models: list, verify checksums, prepare float32 folders.",
                        no_args_is_help=True)
    app.add_typer(group, name="models")

    @group.command("list")
    def list_models(as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout.")) -> None:
        """List bundled models with their role, size and whether they are prepared."""
        rows = [{"name": m.name, "model": m.description, "role": m.role, "parameters": m.parameters,
                 "package": m.package, "prepared": None if m.kind != "gguf" else models.is_prepared(m.name)}
                for m in models.REGISTRY.values()]
        if as_json:
            print_json({"models": rows})
            return
        table = Table("name", "model", "role", "parameters", "package", "prepared")
        for row in rows:
            prepared = "n/a" if row["prepared"] is None else ("yes" if row["prepared"] else "no")
            table.add_row(row["name"], row["model"], row["role"], row["parameters"], row["package"], prepared)
        print_table(table)

    @group.command("verify")
    def verify(names: list[str] = typer.Argument(None, help="Models to check (default: all)."),
               as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout.")) -> None:
        """Check every bundled file's sha256; exit 2 naming the first missing or mismatched file."""
        rows, failures = [], []
        for name in names or list(models.REGISTRY):
            m = models.get_bundled(name)
            row = {"name": m.name, "role": m.role, "parameters": m.parameters}
            try:
                rows.append({**row, "file": models.verify_model(name).name, "ok": True, "error": None})
            except InputError as error:
                rows.append({**row, "file": error.path, "ok": False, "error": str(error)})
                failures.append(error)
        if as_json:
            print_json({"models": rows, "ok": not failures})
        else:
            table = Table("name", "role", "parameters", "file", "sha256")
            for row in rows:
                table.add_row(row["name"], row["role"], row["parameters"], row["file"] or "-",
                              "[green]ok[/]" if row["ok"] else "[red]failed[/]")
            print_table(table)
        if failures:
            raise failures[0]

    @group.command("prepare")
    def prepare(names: list[str] = typer.Argument(None, help="Models to prepare (default: all GGUF models).")) -> None:
        """Convert GGUF models once into cached float32 Hugging Face folders under SAFEPREF_HOME."""
        names = names or [m.name for m in models.REGISTRY.values() if m.kind == "gguf"]
        for name in names:
            folder = models.prepare_model(name)
            Console().print(f"{name}: {folder}")
