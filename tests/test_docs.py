"""Every table generated from a committed bundle equals what its bundle gives now: no figure in the docs is older
than its evidence (`make docs` regenerates them)."""

import copy
import re
from pathlib import Path

import pytest

from safepref.report.analysis import collect_results
from safepref.report.benign import collapsed_configurations
from safepref.report.docs import (
    BLOCKS,
    MARKERS,
    committed_bundles,
    findings_rows,
    findings_table,
    generated_tables,
    heading_anchor,
    mechanism_table,
    readme_block,
    replace_block,
    results_page,
    section_heading,
)

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = ["Multi-model pairs are more separable", "DPO loss falls faster on multi-model pairs",
            "Self+RM is safer than multi-model recipes", "Multi-model data improves general ability",
            "Separability predicts ASR across configurations"]


@pytest.fixture(scope="module")
def quick():
    return collect_results(ROOT / "results" / "quick")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split(" | ")]


def test_committed_tables_equal_their_bundles():
    expected = generated_tables(ROOT)
    stale = [str(path.relative_to(ROOT)) for path, text in expected.items()
             if not path.is_file() or path.read_text(encoding="utf-8") != text]
    assert not stale, f"generated from results/ but out of date (run `make docs`): {stale}"


def test_every_committed_bundle_has_its_readme_block():
    """Each committed bundle shows in the README in at least one block of a known kind (every block present is
    regenerated and compared by the test above)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    bundles = committed_bundles(ROOT)
    assert bundles, "no bundle committed under results/"
    present = set(re.findall(r"<!-- generated:(.+?):begin -->", readme))
    assert present == set(re.findall(r"<!-- generated:(.+?):end -->", readme)), "a README block lacks its other marker"
    for folder in bundles:
        assert any(f"{folder.name}-{kind}" in present for kind in BLOCKS), f"{folder.name}: no README block"
    names = {folder.name for folder in bundles}
    unknown = [block for block in present if not any(block == f"{n}-{k}" for n in names for k in BLOCKS)]
    assert not unknown, f"README blocks of no committed bundle or kind (never regenerated): {unknown}"


def test_quick_findings_are_the_five_in_order(quick):
    target = next(iter(quick["targets"]))
    rows_of = quick["targets"][target]
    lines = findings_table(quick, target)
    assert _cells(lines[0]) == ["finding", "verdict", "evidence"]
    rows = [_cells(line) for line in lines[2:]]
    assert [row[0] for row in rows] == FINDINGS
    # the embed probe, not the shallow one
    embed = {name: rows_of[name]["audit"]["features"]["embed"]["accuracy"] for name in ("self_rm", "gpt4o_self")}
    assert rows[0][2].startswith(f"probe accuracy (embed): Self+RM {embed['self_rm']:.2f} vs GPT4o+Self "
                                 f"{embed['gpt4o_self']:.2f}")
    late = {name: rows_of[name]["training"]["late_loss"] for name in ("self_rm", "gpt4o_self")}
    assert f"Self+RM {late['self_rm']:.2f} vs GPT4o+Self {late['gpt4o_self']:.2f}" in rows[1][2]
    # the harm judge's ASR, not the keyword judge's
    harm = {name: next(r for r in rows_of[name]["safety"] if r["judge"] == "harm" and r["attack"] == "none")
            for name in ("self_rm", "gpt4o_self")}
    assert rows[2][2].startswith(f"{harm['self_rm']['suite']}, harm judge, n={harm['self_rm']['n']}: "
                                 f"Self+RM {harm['self_rm']['asr']:.2f} vs GPT4o+Self {harm['gpt4o_self']['asr']:.2f}")
    assert rows[3][1].startswith("arc_easy: **")
    assert rows[4][1:] == ["not measured", "–"]  # under four trained configurations: no correlation


def test_findings_block_links_to_the_bundles_section(quick):
    block = readme_block("quick", "findings", quick)
    assert heading_anchor(section_heading("quick")) == "resultsquick"
    assert section_heading("quick") in results_page([("quick", quick)]).split("\n")
    assert "(docs/results.md#resultsquick)" in block
    assert block.startswith(MARKERS[0].format(name="quick-findings"))
    assert block.endswith(MARKERS[1].format(name="quick-findings"))


def _correlation(feature: str, rho: float, ci95: list[float], p: float, verdict: str) -> dict:
    return {"claim": f"more separable pairs go with higher ASR (Spearman rank correlation across 5 configurations, "
                     f"probe accuracy ({feature} features) against harm ASR (advbench))",
            "self_rm": None, "comparisons": [], "points": [], "detail": "...", "verdict": verdict,
            "correlation": {"n": 5, "rho": rho, "ci95": ci95, "p": p}}


def test_the_correlation_finding_reads_the_embed_check(quick):
    results = copy.deepcopy(quick)
    target = next(iter(results["targets"]))
    results["paper_checks"][target] += [_correlation("shallow", -0.3, [-0.93, 0.78], 0.683, "no evidence of a relation"),
                                        _correlation("embed", 0.9, [0.12, 0.99], 0.083, "direction only")]
    row = _cells(findings_table(results, target)[-1])
    assert row == ["Separability predicts ASR across configurations", "**direction only**",
                   "embed features: Spearman rho 0.90 [0.12, 0.99], p 0.083, n=5"]


def _asr(suite: str, judge: str, self_rm: float, others: dict[str, float], verdict: str) -> dict:
    return {"claim": f"Self+RM has lower ASR ({suite}, {judge} judge, n=100)", "self_rm": self_rm, "verdict": verdict,
            "comparisons": [{"configuration": label, "value": value, "difference": value - self_rm}
                            for label, value in others.items()]}


def test_the_asr_finding_gives_one_verdict_per_suite_from_the_harm_judge():
    checks = [_asr("jbb", "keyword", 0.90, {"HC+Self": 0.95}, "no measurable difference"),
              _asr("jbb", "harm", 0.10, {"HC+Self": 0.30, "GPT4o+Self": 0.25}, "holds"),
              _asr("harmbench", "classifier", 0.20, {"HC+Self": 0.22}, "direction only")]
    verdict, evidence = findings_rows(checks)[2][1:]
    assert verdict == "jbb: **holds**; harmbench: **direction only**"  # harmbench has no harm judge: its first
    assert evidence == ("jbb, harm judge, n=100: Self+RM 0.10 vs multi-model 0.25–0.30; "
                        "harmbench, classifier judge, n=100: Self+RM 0.20 vs HC+Self 0.22")
    assert [row[1:] for row in findings_rows(checks)[:2]] == [("not measured", "–")] * 2


def test_a_block_is_replaced_between_its_markers_only():
    other = "<!-- generated:y:begin -->k<!-- generated:y:end -->"
    text = f"before\n<!-- generated:x:begin -->\nold\n<!-- generated:x:end -->\nafter {other}"
    new = "<!-- generated:x:begin -->new<!-- generated:x:end -->"
    assert replace_block(text, "x", new) == f"before\n{new}\nafter {other}"


def test_the_mechanism_table_puts_each_configurations_pairs_beside_its_outcomes(quick):
    rows = copy.deepcopy(next(iter(quick["targets"].values())))
    trained = next(name for name, row in rows.items() if (row.get("audit") or {}).get("pair_diagnostics"))
    diagnostics = rows[trained]["audit"]["pair_diagnostics"]
    diagnostics["harmful"]["chosen"]["rate"], diagnostics["harmful"]["rejected"]["rate"] = 0.125, 0.5
    diagnostics["refusal"]["chosen"]["rate"], diagnostics["refusal"]["rejected"]["rate"] = 0.75, 0.25
    rows[trained]["benign"]["refusal_rate"], rows[trained]["benign"]["refusal_rate_ci"] = 0.7, [0.57, 0.8]
    lines = mechanism_table(rows)
    header, body = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    assert [cells[0] for cells in body] == [row["label"] for row in rows.values()]
    assert all(len(cells) == len(header) for cells in body)
    found = next(cells for cells in body if cells[0] == rows[trained]["label"])
    assert found[1:3] == ["0.12 / 0.50", "0.75 / 0.25"]
    benign = header.index(f"refusal, benign prompts (n={rows[trained]['benign']['n']})")
    assert found[benign] == "0.70 [0.57, 0.80]"
    sft = next(cells for cells in body if cells[0] == "SFT")
    assert sft[1:3] == ["–", "–"]  # the untrained model has no pairs
    collapsed = collapsed_configurations(rows)
    for name, row in rows.items():
        cells = next(c for c in body if c[0] == row["label"])
        assert (cells[-1] != "no") == (name in collapsed)
