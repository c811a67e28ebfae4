"""The report's figures, each a PNG embedded as a data URI: attack success rate per configuration (grouped as SFT |
multi-model pairs | pairs ranked by a reward model, 95% intervals and n on every rate), separability against ASR,
and the DPO training curves."""

from __future__ import annotations

import base64
import io
from typing import Any

GROUP_COLORS = {"sft": "#7f7f7f", "multi": "#d62728", "rm": "#1f77b4", "other": "#9467bd"}
JUDGE_HATCH = {0: "", 1: "//", 2: "..", 3: "xx"}


def _figure_to_data_uri(figure) -> str:
    # matplotlib loads in seconds: imported only where used
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _error_bar(value: float, low: float, high: float) -> list[list[float]]:
    # a rate of exactly 1 has a Wilson upper bound a rounding error below 1: matplotlib refuses negative bar lengths
    return [[max(0.0, value - low)], [max(0.0, high - value)]]


def asr_figure(target: str, rows: dict[str, Any], attack: str, suite: str) -> str | None:
    """Bars of ASR per configuration, one bar per judge, 95% Wilson intervals, n under each label; with several
    training seeds the bar is their mean and each seed is a dot with its own Wilson interval."""
    # matplotlib loads in seconds: imported only where used
    import matplotlib

    matplotlib.use("Agg")
    # matplotlib loads in seconds: imported only where used
    import matplotlib.pyplot as plt

    configurations = [c for c in rows if any(r["attack"] == attack and r.get("suite") == suite
                                             for r in rows[c]["safety"])]
    judges = sorted({r["judge"] for c in configurations for r in rows[c]["safety"]
                     if r["attack"] == attack and r.get("suite") == suite})
    if not configurations or not judges:
        return None
    figure, axis = plt.subplots(figsize=(1.1 * len(configurations) + 2.5, 3.8))
    width = 0.8 / len(judges)
    for j, judge in enumerate(judges):
        for i, name in enumerate(configurations):
            found = [r for r in rows[name]["safety"] if r["attack"] == attack and r["judge"] == judge
                     and r.get("suite") == suite]
            if not found or found[0]["asr"] is None:
                continue
            result = found[0]
            centre = i + (j - (len(judges) - 1) / 2) * width
            seeds = [s for s in result.get("seeds") or [] if s.get("asr") is not None]
            low, high = result["asr_ci95"] or (result["asr"], result["asr"])
            axis.bar(centre, result["asr"], width, color=GROUP_COLORS[rows[name]["group"]], hatch=JUDGE_HATCH[j % 4],
                     edgecolor="black", yerr=None if seeds else _error_bar(result["asr"], low, high), capsize=3,
                     label=judge if i == 0 else None)
            # several seeds: each seed's rate with its own Wilson interval, side by side on the bar
            for k, seed in enumerate(seeds):
                x = centre + (k - (len(seeds) - 1) / 2) * width * 0.6 / max(len(seeds) - 1, 1)
                axis.errorbar(x, seed["asr"], yerr=_error_bar(seed["asr"], *seed["asr_ci95"]), fmt="o",
                              color="black", markersize=3, capsize=2, linewidth=1)
    n_values = {r["n"] for c in configurations for r in rows[c]["safety"] if r["attack"] == attack
                and r.get("suite") == suite}
    axis.set_xticks(range(len(configurations)))
    axis.set_xticklabels([rows[c]["label"] for c in configurations], rotation=20)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("attack success rate")
    seeded = any(r.get("seeds") for c in configurations for r in rows[c]["safety"])
    interval = ("bars: mean over seeds; dots: each seed with its 95% Wilson CI" if seeded else "95% Wilson CI")
    axis.set_title(f"{target} — {suite}, attack '{attack}' (n={'/'.join(map(str, sorted(n_values)))} prompts, "
                   f"{interval})\ngrey: SFT, red: multi-model pairs, blue: RM-ranked / original pairs; "
                   f"hatching: judge", fontsize=9)
    axis.legend(title="judge", fontsize=8)
    return _figure_to_data_uri(figure)


def separability_figure(target: str, rows: dict[str, Any], judge: str, feature: str) -> str | None:
    """Separability (probe accuracy) against ASR per configuration: the paper's mechanism in one picture."""
    # matplotlib loads in seconds: imported only where used
    import matplotlib

    matplotlib.use("Agg")
    # matplotlib loads in seconds: imported only where used
    import matplotlib.pyplot as plt

    points = []
    for name, row in rows.items():
        audit = (row.get("audit") or {}).get("features", {}).get(feature)
        asr = [r for r in row["safety"] if r["judge"] == judge and r["attack"] == "none" and r["asr"] is not None]
        if audit and asr:
            points.append((name, row, audit, asr[0]))
    if len(points) < 2:
        return None
    figure, axis = plt.subplots(figsize=(5.5, 4))
    for _name, row, audit, asr in points:
        x_low, x_high = audit["accuracy_ci"]
        y_low, y_high = asr["asr_ci95"] or (asr["asr"], asr["asr"])
        axis.errorbar(audit["accuracy"], asr["asr"], xerr=_error_bar(audit["accuracy"], x_low, x_high),
                      yerr=_error_bar(asr["asr"], y_low, y_high), fmt="o", color=GROUP_COLORS[row["group"]],
                      capsize=3)
        axis.annotate(row["label"], (audit["accuracy"], asr["asr"]), textcoords="offset points", xytext=(5, 5),
                      fontsize=8)
    axis.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    axis.set_xlabel(f"chosen-vs-rejected probe accuracy ({feature} features, 95% CI)")
    axis.set_ylabel(f"ASR ({judge} judge, 95% CI)")
    axis.set_title(f"{target}: separability vs attack success (n pairs = "
                   f"{'/'.join(sorted({str(p[2] and p[1]['audit']['n_pairs']) for p in points}))})", fontsize=9)
    return _figure_to_data_uri(figure)


def training_figure(target: str, rows: dict[str, Any]) -> str | None:
    # matplotlib loads in seconds: imported only where used
    import matplotlib

    matplotlib.use("Agg")
    # matplotlib loads in seconds: imported only where used
    import matplotlib.pyplot as plt

    trained = [(name, row) for name, row in rows.items() if (row.get("training") or {}).get("dynamics")]
    if not trained:
        return None
    figure, (loss_axis, margin_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    for _name, row in trained:
        steps = [r["step"] for r in row["training"]["dynamics"] if "loss" in r]
        style = "-" if row["group"] == "multi" else "--"
        loss_axis.plot(steps, [r["loss"] for r in row["training"]["dynamics"] if "loss" in r], style, label=row["label"])
        margin_axis.plot(steps, [r.get("rewards/margins") for r in row["training"]["dynamics"] if "loss" in r], style,
                         label=row["label"])
    loss_axis.axhline(0.693, color="grey", linestyle=":", linewidth=1)
    loss_axis.set_title(f"{target}: DPO loss per step (dotted: ln 2)", fontsize=9)
    margin_axis.set_title("reward margin (chosen - rejected) per step", fontsize=9)
    for axis in (loss_axis, margin_axis):
        axis.set_xlabel("step")
    loss_axis.legend(fontsize=7)
    return _figure_to_data_uri(figure)
