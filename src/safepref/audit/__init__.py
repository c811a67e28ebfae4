"""Separability audit: can a linear probe tell chosen from rejected, and by which cue?

The paper's mechanism (Wang et al. 2025): when chosen and rejected come from different models, a linear probe on
their representations separates them almost perfectly, so DPO can learn "who wrote it" instead of the safety
constraint. This stage measures that for any preference data:

1. Each response (chosen and rejected of every pair) becomes a feature vector, per feature set:
   ``hidden:MODEL[:LAYER]`` (the target model's hidden states over the response tokens, given its prompt),
   ``embed`` (sentence embeddings of the response's first 128 word pieces) or ``shallow`` (length, punctuation,
   markdown, phrase cues).
2. A standardised logistic regression classifies chosen vs rejected, cross-validated in k folds grouped by prompt
   (no prompt, hence no pair, on both sides of a split), giving an out-of-fold score for every response.
3. Accuracy carries a 95% CI from a bootstrap over prompts: the two sides of a pair (and pairs that share a
   prompt) are not independent, so a Wilson interval over the 2n responses would be too narrow. Wilson is
   reported beside it for reference.
4. A control runs the same probe after swapping chosen/rejected in a random half of the pairs of every fold (the
   pair structure is kept, the label carries no information): it must come out near 0.5, or the protocol leaks.
5. Every shallow cue is also probed alone (same folds) with its Cohen's d, so the verdict can say which cue
   separates.

Verdict thresholds are set on the accuracy *above the control* (the margin), not on raw accuracy, so a leaky or
unbalanced setup does not read as separability. A margin of 0.30 (about 0.80 accuracy against a 0.5 control) means
the probe ranks four responses in five correctly from style alone: DPO's implicit reward can then reach most of its
margin without reading content — high shortcut risk. Below 0.15 (about 0.65) the shortcut explains little.
If the accuracy's CI does not clear the control, the data is called not separable.

The pieces: :mod:`.features` (feature sets and their cache), :mod:`.probe` (folds, probe, control, intervals),
:mod:`.verdict` (risk and sentence), :mod:`.plots` (PCA projection); :func:`audit_pairs` wires them.
"""

from safepref.audit.config import CONTROL_PAIRS_BUDGET, LENGTH_UNIT, AuditConfig
from safepref.audit.features import (
    CUES_FILE,
    SHALLOW_VERSION,
    STRUCTURAL_CUES,
    compute_features,
    cue_descriptions,
    embedding_features,
    hidden_state_features,
    parse_feature_specs,
    phrase_cues,
    response_token_mask,
    shallow_features,
)
from safepref.audit.plots import projection_plot
from safepref.audit.probe import (
    cluster_bootstrap_interval,
    cohens_d,
    control_swapped_labels,
    cue_table,
    grouped_splits,
    out_of_fold_scores,
    probe_feature_set,
)
from safepref.audit.separability import audit_pairs, resolve_pairs
from safepref.audit.verdict import separating_cues, verdict_for

__all__ = ["CONTROL_PAIRS_BUDGET", "CUES_FILE", "LENGTH_UNIT", "SHALLOW_VERSION", "STRUCTURAL_CUES", "AuditConfig",
           "audit_pairs", "cluster_bootstrap_interval", "cohens_d", "compute_features", "control_swapped_labels",
           "cue_descriptions", "cue_table", "embedding_features", "grouped_splits", "hidden_state_features",
           "out_of_fold_scores", "parse_feature_specs", "phrase_cues", "probe_feature_set", "projection_plot",
           "resolve_pairs", "response_token_mask", "separating_cues", "shallow_features", "verdict_for"]
