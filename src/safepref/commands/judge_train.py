"""``safepref judge-train``: train a judge head (harm, refusal) with leave-one-source-out validation."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from safepref.judges.card import write_model_card
from safepref.judges.head import shipped_head_path


def register(app: typer.Typer) -> None:
    @app.command("judge-train", epilog="Example: safepref judge-train harm --out my-harm-head")
    def judge_train(
        judge: str = typer.Argument(..., help="harm | refusal | harm-fast | refusal-fast (no LM read)"),
        out: Path = typer.Option(None, "--out", help="folder for <judge>.npz, .json and MODEL_CARD_<judge>.md "
                                                     "(default: the package's judges/heads, replacing the shipped head)"),
        folds: bool = typer.Option(True, "--folds/--no-folds", help="validate leave-one-source-out first"),
        seed: int = typer.Option(0, "--seed"),
        as_json: bool = typer.Option(False, "--json", help="print exactly one JSON object (the card)"),
    ) -> None:
        """Train the judge on the bundled human-labelled responses; report agreement on each held-out source."""
        # judges.training loads scikit-learn and scipy at import (~3 s): only this command needs it
        from safepref.judges.training import JudgeTrainingConfig, labelled_examples, train_judge


        labelled_examples(judge)  # an unknown judge fails before any work
        out_dir = out or shipped_head_path(judge).parent
        card = train_judge(JudgeTrainingConfig(judge=judge, seed=seed), out_dir, folds=folds)
        write_model_card(card, out_dir)
        if as_json:
            print(json.dumps(card, ensure_ascii=False))
            return
        console = Console()
        for fold in card["leave_one_source_out"]:
            synthetic = (f" non-answers judged 1={fold['non_answers_judged_1']} (n={fold['non_answers']})"
                         if fold.get("non_answers") else "")
            synthetic += (f" framed rows agreement={fold['framed_agreement']} (n={fold['framed']})"
                          if fold.get("framed") else "")
            synthetic += (f" requests in templates agreement={fold['in_templates_agreement']} (n={fold['in_templates']})"
                          if fold.get("in_templates") else "")
            synthetic += (f" plain answers as stories agreement={fold['in_stories_agreement']} against "
                          f"{fold['plain_agreement']} bare (n={fold['in_stories']})" if fold.get("in_stories") else "")
            console.print(f"held out {fold['held_out']}: n={fold['n']} agreement={fold['agreement']} "
                          f"kappa={fold['kappa']} precision={fold['precision']} recall={fold['recall']}{synthetic}",
                          highlight=False)
        console.print(f"summary: {card['summary']}", highlight=False)
        if card.get("unseen_requests"):
            check = card["unseen_requests"]
            console.print(f"unseen requests of a seen source ({check['source']}, {check['held_out']}): n={check['n']} "
                          f"agreement={check['agreement']} kappa={check['kappa']}", highlight=False)
        console.print(f"wrote {card['head']}", highlight=False)
