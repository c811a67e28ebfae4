"""``safepref resolution``: how many prompts a paired comparison needs, or what a number of prompts can detect."""

from __future__ import annotations

import json

import typer

from safepref.core.errors import InputError
from safepref.core.paired import minimum_detectable_difference, paired_sample_size


def register(app: typer.Typer) -> None:
    @app.command("resolution",
                 epilog="Example: safepref resolution --detect 0.05 --discordance 0.15")
    def resolution(
        discordance: float = typer.Option(..., "--discordance", help="Share of prompts on which the two "
                                          "configurations disagree (a run's `discordance`, or a guess)."),
        n: int = typer.Option(None, "--n", help="Prompts (or questions) compared: prints what they can detect."),
        detect: float = typer.Option(None, "--detect", help="Difference to detect: prints the prompts it needs."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Paired comparisons at 80% power, two-sided 5% (Connor 1987): the smallest difference n prompts detect,
        or the prompts a difference needs."""
        if (n is None) == (detect is None):
            raise InputError("give exactly one of --n and --detect")
        if not 0 <= discordance <= 1:
            raise InputError(f"--discordance must be a share between 0 and 1, got {discordance}")
        if n is not None:
            if n < 1:
                raise InputError(f"--n must be at least 1, got {n}")
            result = {"n": n, "discordance": discordance,
                      "detectable_difference": minimum_detectable_difference(n, discordance)}
            text = f"{n} prompts with {discordance:.0%} discordant could detect {result['detectable_difference']:.3f}"
        else:
            if not 0 < detect <= max(discordance, detect) <= 1:
                raise InputError(f"--detect must be in (0, 1], got {detect}")
            needed = paired_sample_size(detect, max(discordance, detect))
            result = {"detect": detect, "discordance": discordance, "n": needed}
            text = f"detecting {detect:.3f} with {discordance:.0%} discordant needs {needed} prompts"
        print(json.dumps(result) if as_json else text)
