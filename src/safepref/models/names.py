"""How a person recognises a model in progress bars, log lines and reports: a registry name, a folder's name, or
the label a run gave a model it trained (``Self+RM, seed 1``) — never a content key."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

from safepref.models.registry import REGISTRY, canonical_name

__all__ = ["display_name", "model_label", "set_display_name"]

_KEY_SUFFIX = re.compile(r"(-[0-9a-f]{12,16})+$")  # the content keys the runner appends to artifact names


# labels a caller gave a model folder for this process (a run names a trained model by recipe and seed)
_DISPLAY_LABELS: dict[str, str] = {}


def set_display_name(path: str | Path, label: str) -> None:
    """Name the model at ``path`` in progress bars and log lines as ``label`` (e.g. ``Self+RM, seed 1``)."""
    _DISPLAY_LABELS[str(Path(path).resolve())] = label


def display_name(name_or_path: str | Path) -> str:
    """What a person recognises a model by, for progress bars (a label, never a key): the label a run gave it
    (``Self+RM, seed 1``), else for a DPO-trained folder its base model and the pairs' recipe
    (``smollm2-135m-instruct DPO stronger_self``), not its hashed name."""
    with contextlib.suppress(OSError, ValueError):
        label = _DISPLAY_LABELS.get(str(Path(str(name_or_path)).resolve()))
        if label:
            return label
    summary = Path(str(name_or_path)) / "train_summary.json"
    if summary.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            record = json.loads(summary.read_text())
            return f"{display_name(record['model'])} DPO {_KEY_SUFFIX.sub('', Path(record['pairs']).stem)}"
    return model_label(name_or_path)


def model_label(name_or_path: str | Path) -> str:
    """Short label for a model in artifacts and reports: the registry name or the folder's name."""
    text = str(name_or_path)
    if text in REGISTRY:
        return canonical_name(text)
    return text if "/" not in text or not Path(text).exists() else Path(text).name
