"""The audit's picture: a 2-D PCA projection of one feature set, chosen against rejected."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from safepref.core.paths import slug


def projection_name(spec: str) -> str:
    """A feature spec as a file-name part (``hidden:smollm2:-1`` -> ``hidden_smollm2_-1``)."""
    return slug(spec).strip("_")


def projection_plot(features: np.ndarray, labels: np.ndarray, title: str, path: Path) -> Path:
    """2-D PCA of the standardised features, chosen vs rejected."""
    # matplotlib loads in seconds: imported only where used
    import matplotlib

    matplotlib.use("Agg")
    # matplotlib and scikit-learn load in seconds: imported only where used
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    standardised = StandardScaler().fit_transform(features)
    components = min(2, standardised.shape[1])
    with threadpool_limits(1, user_api="blas"):  # a small matrix: see safepref.audit.probe.PROBE_BLAS_THREADS
        points = PCA(n_components=components).fit_transform(standardised)
    if components == 1:
        points = np.column_stack([points[:, 0], np.zeros(len(points))])
    figure, axes = plt.subplots(figsize=(6, 5))
    for label, name, colour in ((1, "chosen", "tab:blue"), (0, "rejected", "tab:orange")):
        mask = labels == label
        axes.scatter(points[mask, 0], points[mask, 1], s=8, alpha=0.5, label=name, color=colour)
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2")
    axes.set_title(title, fontsize=9)
    axes.legend()
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, path)
    return path
