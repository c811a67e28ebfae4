"""The training dynamics the paper reads as its reward-hacking signal: loss, rewards/chosen, rewards/rejected,
rewards/accuracies and rewards/margins at every logged step, appended to ``DIR/dynamics.jsonl`` during training
(cut back to the checkpoint a resumed run starts from) and drawn into ``DIR/dynamics.png`` after it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from safepref.core.io import AppendLog, write_jsonl_atomic

DYNAMICS_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")


def dynamics_callback(path: Path):
    """A Trainer callback that appends every logged step's loss and rewards to ``path``."""
    # transformers loads in seconds: imported only where used
    from transformers import TrainerCallback

    class DynamicsCallback(TrainerCallback):
        """Appends loss and rewards of every logged training step to dynamics.jsonl (one row per step)."""

        def __init__(self) -> None:
            self.log = AppendLog(path, key_of=lambda row: str(row["step"]))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero:  # one writer in a multi-GPU run
                return
            if logs and "loss" in logs and "rewards/chosen" in logs:
                row = {"step": state.global_step, "epoch": logs.get("epoch", state.epoch),
                       "learning_rate": logs.get("learning_rate")}
                row.update({key: float(logs[key]) for key in DYNAMICS_KEYS if key in logs})
                self.log.append([row])

    return DynamicsCallback()


def cut_dynamics(path: Path, after_step: int) -> None:
    """Drop rows logged after the checkpoint we resume from: those steps are trained again."""
    if not path.is_file():
        return
    rows = AppendLog(path, key_of=lambda row: str(row["step"])).rows()  # opening it also cuts a torn last line
    kept = [row for row in rows if row["step"] <= after_step]
    if len(kept) != len(rows):
        write_jsonl_atomic(path, kept)


def plot_dynamics(rows: list[dict[str, Any]], path: Path) -> Path:
    """Loss (with ln 2, the untrained value) and the rewards per step, as a two-panel PNG."""
    # matplotlib loads in seconds: imported only where used
    import matplotlib

    matplotlib.use("Agg")
    # matplotlib loads in seconds: imported only where used
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in rows]
    figure, (loss_axis, reward_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    loss_axis.plot(steps, [row.get("loss") for row in rows], marker=".", label="DPO loss")
    loss_axis.axhline(math.log(2), color="grey", linestyle="--", linewidth=0.8, label="ln 2 (no preference)")
    loss_axis.set_xlabel("step")
    loss_axis.set_title("loss")
    loss_axis.legend()
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        reward_axis.plot(steps, [row.get(key) for row in rows], marker=".", label=key.split("/")[1])
    accuracy_axis = reward_axis.twinx()
    accuracy_axis.plot(steps, [row.get("rewards/accuracies") for row in rows], color="black", linestyle=":",
                       label="accuracy")
    accuracy_axis.set_ylim(-0.05, 1.05)
    accuracy_axis.set_ylabel("reward accuracy")
    reward_axis.set_xlabel("step")
    reward_axis.set_title("implicit rewards")
    reward_axis.legend(loc="upper left")
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(path)
    return path
