"""Stage 7, report: one self-contained HTML page (figures embedded), ``summary.md`` and ``results.json`` for a run
folder.

:mod:`.analysis` gathers what the run's artifacts say (rates, audits, training, the paper checks, warnings);
:mod:`.figures` draws the figures (the paper's: attack success rate per configuration, grouped as SFT | multi-model
pairs | pairs ranked by a reward model, with 95% intervals and n on every rate); :mod:`.render` writes the pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safepref.core.io import write_json_atomic, write_text_atomic
from safepref.report.analysis import (
    LABELS,
    MULTI_MODEL,
    SELF_RM,
    collect_results,
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
           "data_warnings", "late_loss", "pair_diagnostics_rows", "paper_checks", "prompt_set_warning", "recipe_label",
           "render_html", "render_markdown", "separability_figure", "training_figure", "unjudged_warnings",
           "write_report"]


def write_report(run_dir: str | Path) -> dict[str, Any]:
    """Write ``report.html``, ``summary.md`` and ``results.json`` into the run folder; returns their paths."""
    run_dir = Path(run_dir)
    results = collect_results(run_dir)
    results_path = write_json_atomic(run_dir / "results.json", results)
    markdown_path = write_text_atomic(run_dir / "summary.md", render_markdown(results))
    html_path = write_text_atomic(run_dir / "report.html", render_html(results))
    return {"report": str(html_path), "results": str(results_path), "summary": str(markdown_path)}
