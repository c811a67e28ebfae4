"""Stage 7, report: one self-contained HTML page (figures embedded), ``summary.md`` and ``results.json`` from a
bundle (:mod:`safepref.bundle`): a report is a function of the bundle alone, so the same bundle gives the same
tables wherever it is read.

:mod:`.analysis` gathers what the run's artifacts say (rates, audits, training, the paper checks, warnings);
:mod:`.figures` draws the figures (the paper's: attack success rate per configuration, grouped as SFT | multi-model
pairs | pairs ranked by a reward model, with 95% intervals and n on every rate); :mod:`.render` writes the pages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safepref.bundle.store import check_writable
from safepref.core.io import write_text_atomic
from safepref.report.analysis import (
    LABELS,
    MULTI_MODEL,
    SELF_RM,
    collect_results,
    configuration_label,
    data_warnings,
    paper_checks,
    prompt_set_warning,
    recipe_label,
    unjudged_warnings,
)
from safepref.report.figures import asr_figure, separability_figure, training_figure
from safepref.report.render import PAIR_DIAGNOSTICS_HEADER, pair_diagnostics_rows, render_html, render_markdown
from safepref.report.rows import late_loss

__all__ = ["LABELS", "MULTI_MODEL", "PAIR_DIAGNOSTICS_HEADER", "SELF_RM", "asr_figure", "collect_results",
           "configuration_label", "data_warnings", "late_loss", "pair_diagnostics_rows", "paper_checks",
           "prompt_set_warning", "recipe_label", "render_html", "render_markdown", "separability_figure",
           "training_figure", "unjudged_warnings", "write_report"]


def write_report(bundle_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Write ``report.html``, ``summary.md`` and ``results.json`` of a bundle into the bundle, and into ``out_dir``
    too when given (a run folder); returns the paths in ``out_dir`` (else in the bundle)."""
    bundle_dir = Path(bundle_dir)
    results = collect_results(bundle_dir)
    folders = list(dict.fromkeys([bundle_dir, *([Path(out_dir)] if out_dir else [])]))
    for folder in folders:
        check_writable(folder)
    texts = {"results.json": json.dumps(results, indent=2, ensure_ascii=False) + "\n",
             "summary.md": render_markdown(results), "report.html": render_html(results)}
    written = {}
    for folder in folders:
        written = {name: write_text_atomic(folder / name, text) for name, text in texts.items()}
    return {"report": str(written["report.html"]), "results": str(written["results.json"]),
            "summary": str(written["summary.md"])}
