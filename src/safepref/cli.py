"""The ``safepref`` command line: a thin layer that wires stages together.

Each stage's commands live in ``safepref/commands/<name>.py`` with a ``register(app)`` function and are
discovered here, so adding a command is adding a file. Bad input (:class:`InputError`) becomes one line on
stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer
import typer.main
from rich.console import Console

from safepref import commands
from safepref.core.errors import InputError

app = typer.Typer(
    name="safepref",
    help="What does your preference data do to your model's safety? Generate, score, build, audit, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
    importlib.import_module(f"{commands.__name__}.{module_info.name}").register(app)


def spread_repeated_options(args: list[str]) -> list[str]:
    """Let a repeatable option take several values after one flag, as in ``--responses a.jsonl b.jsonl``.

    typer (click) wants the flag before every value (``--responses a --responses b``); both forms are accepted.
    Only for commands without positional arguments, where a bare word after such an option means nothing else.
    """
    command = typer.main.get_command(app)  # typer's own click-like classes: read by their attributes
    for token in args:
        if token not in (getattr(command, "commands", None) or {}):
            break
        command = command.commands[token]
    if any(param.param_type_name == "argument" for param in command.params):
        return list(args)
    repeatable = {name for param in command.params if param.param_type_name == "option" and param.multiple
                  for name in param.opts}
    spread, current, values = [], None, 0
    for token in args:
        if token.startswith("-"):
            current, values = (token if token in repeatable else None), 0
        elif current is not None:
            if values:
                spread.append(current)
            values += 1
        spread.append(token)
    return spread


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=spread_repeated_options(sys.argv[1:] if argv is None else argv), prog_name="safepref")
    except InputError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted: rerun the same command to resume", highlight=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
