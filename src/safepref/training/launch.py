"""How ``safepref run`` trains: in its own process, or through ``accelerate launch`` on several GPUs.

The run config's ``training`` block takes two keys beside the DPOTrainingConfig fields:

- ``launcher``: ``auto`` (default: accelerate when more than one GPU is visible, else in-process), ``in-process``
  or ``accelerate``;
- ``accelerate_config``: an accelerate config file; by default the shipped ``registry/accelerate/multi_gpu.yaml``
  (plain data parallel) for LoRA and ``deepspeed_zero3.yaml`` (ZeRO-3, needs ``safepref[deepspeed]``) for a full
  fine-tune, as in TRL's examples.

The launched command is ``python -m accelerate.commands.launch`` (what the ``accelerate launch`` script runs, from
the same interpreter as the run) ``--config_file FILE --num_processes N -m safepref train ... --config JSON``: the
training settings travel as a JSON file so every field reaches the child, not only those with a CLI option.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from safepref.core.errors import InputError
from safepref.core.io import write_json_atomic

ACCELERATE_DIR = Path(__file__).parents[1] / "registry" / "accelerate"
LAUNCH_KEYS = ("launcher", "accelerate_config")
SETTINGS_FILE = "train_config.json"


class LaunchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    launcher: Literal["auto", "in-process", "accelerate"] = Field(
        "auto", description="accelerate when more than one GPU is visible (auto), or as given")
    accelerate_config: str | None = Field(None, description="accelerate config file (default: by LoRA / full)")

    def uses_accelerate(self, visible_gpus: int) -> bool:
        if self.launcher == "auto":
            return visible_gpus > 1
        return self.launcher == "accelerate"

    def config_file(self, lora: bool) -> Path:
        """The accelerate config for this run; a full fine-tune's default needs DeepSpeed installed."""
        if self.accelerate_config:
            path = Path(self.accelerate_config).expanduser()
            if not path.is_file():
                raise InputError("accelerate config file not found", path=path, field="training.accelerate_config")
            return path
        if lora:
            return ACCELERATE_DIR / "multi_gpu.yaml"
        if importlib.util.find_spec("deepspeed") is None:
            raise InputError("full fine-tuning on several GPUs uses DeepSpeed ZeRO-3: pip install 'safepref[deepspeed]',"
                             " or set training.accelerate_config (e.g. to registry/accelerate/multi_gpu.yaml)",
                             field="training.launcher")
        return ACCELERATE_DIR / "deepspeed_zero3.yaml"


def split_training(values: dict[str, Any]) -> tuple[dict[str, Any], LaunchSettings]:
    """(DPOTrainingConfig fields, launch settings) from a run config's merged training block."""
    launch = LaunchSettings(**{k: v for k, v in values.items() if k in LAUNCH_KEYS})
    return {k: v for k, v in values.items() if k not in LAUNCH_KEYS}, launch


def accelerate_command(model: str, pairs: Path, out: Path, settings_file: Path, config_file: Path,
                       num_processes: int) -> list[str]:
    """The ``accelerate launch -m safepref train`` command line, with this interpreter."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
            "--num_processes", str(num_processes), "-m", "safepref", "train", "--model", str(model),
            "--pairs", str(pairs), "--out", str(out), "--config", str(settings_file), "--device", "auto"]


def train_with_accelerate(model: str, pairs: Path, out: Path, config: Any, launch: LaunchSettings,
                          visible_gpus: int) -> list[str]:
    """Write the settings beside the output and run ``safepref train`` under accelerate; returns the command.

    The child writes ``train_summary.json`` as an in-process run does; a failed child is an error, never a
    half-finished result (an interrupted run resumes from its checkpoint on the next ``safepref run``)."""
    out.mkdir(parents=True, exist_ok=True)
    settings_file = out / SETTINGS_FILE
    write_json_atomic(settings_file, asdict(config))
    command = accelerate_command(model, pairs, out, settings_file, launch.config_file(config.lora),
                                 max(visible_gpus, 1))
    finished = subprocess.run(command, stdin=subprocess.DEVNULL, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"accelerate launch exited with {finished.returncode}: {' '.join(command)}")
    return command
