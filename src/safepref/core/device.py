"""The device policy: one resolver that every stage asks where to run a model and in which precision.

    resolve_placement(device="auto", dtype="auto", parameters=None) -> Placement(device, dtype)

Device: ``auto`` is the first CUDA device when torch sees one, else the CPU; ``cpu``, ``cuda`` and ``cuda:N`` are
taken as given (a CUDA device that is absent is an InputError, not a silent fall-back to the CPU).

Precision (``dtype="auto"``) is chosen by measurement, not by rule:
- CPU: float32. bfloat16 was 2x slower than float32 on the 2-core development CPU (shared/MODELS.md).
- CUDA, models under ``SMALL_MODEL_PARAMETERS`` (1e9): float32. On one H100 a SmolLM2-135M-shaped model generated
  3,375 tok/s in float32 against 1,221 tok/s in bfloat16 at 128 rows (shared/DESIGN.md, "Second wave"): a model
  this small is bound by kernel launches, and bfloat16 only adds casts.
- CUDA, larger models (or size unknown): bfloat16 where the GPU supports it, else float16. Not measured here; a
  7B model in float32 needs 28 GB for its weights alone, and half precision is what such models ship in.
``--dtype float32|bfloat16|float16`` overrides the policy on any device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from safepref.core.errors import InputError

DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda or cuda:N."
DTYPE_HELP = "auto (float32 on the CPU and for models under 1B parameters on CUDA, else bfloat16), float32, " \
             "bfloat16 or float16."
DTYPES = ("auto", "float32", "bfloat16", "float16")
SMALL_MODEL_PARAMETERS = 1_000_000_000
_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class Placement:
    """Where a model runs and in which precision; ``reason`` says why (for logs and provenance)."""

    device: Any  # torch.device
    dtype: Any  # torch.dtype
    reason: str = ""

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def describe(self) -> dict[str, str]:
        return {"device": str(self.device), "dtype": self.dtype_name}


def check_device(spec: str) -> str:
    """The spec, normalised; an InputError naming the choices if it is not one of them."""
    text = str(spec).strip().lower()
    if not _DEVICE_PATTERN.fullmatch(text):
        raise InputError(f"unknown device '{spec}' (choose {DEVICE_HELP})", field="device")
    return text


def check_dtype(spec: str) -> str:
    text = str(spec).strip().lower()
    if text not in DTYPES:
        raise InputError(f"unknown dtype '{spec}' (choose {', '.join(DTYPES)})", field="dtype")
    return text


def resolve_device(spec: str = "auto"):
    """``auto|cpu|cuda|cuda:N`` -> torch.device; an absent CUDA device is an InputError."""
    # torch loads in seconds: imported only where used
    import torch

    text = check_device(spec)
    if text == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(text.split(":")[1]) if ":" in text else 0
    if index >= count:
        seen = f"{count} CUDA device(s) visible" if count else "no CUDA device visible to torch"
        raise InputError(f"device '{spec}' is not available ({seen}); use --device auto or cpu", field="device")
    return torch.device("cuda", index)


def choose_dtype(device: Any, requested: str = "auto", parameters: int | None = None) -> tuple[Any, str]:
    """The policy above: (torch dtype, reason)."""
    # torch loads in seconds: imported only where used
    import torch

    requested = check_dtype(requested)
    if requested != "auto":
        return getattr(torch, requested), "requested"
    if device.type != "cuda":
        return torch.float32, "auto: float32 on the CPU (bfloat16 measured 2x slower)"
    if parameters is not None and parameters < SMALL_MODEL_PARAMETERS:
        return torch.float32, f"auto: float32 for a {parameters / 1e6:.0f}M-parameter model on CUDA (measured faster)"
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, "auto: bfloat16 for a large (or unsized) model on a GPU that supports it"
    return torch.float16, "auto: float16 for a large (or unsized) model on a GPU without bfloat16"


def resolve_placement(device: str = "auto", dtype: str = "auto", parameters: int | None = None) -> Placement:
    """One call for a stage: where to run and in which precision (``parameters`` feeds the dtype policy)."""
    resolved = resolve_device(device)
    chosen, reason = choose_dtype(resolved, dtype, parameters)
    return Placement(resolved, chosen, reason)


def model_device(model: Any):
    """The device a loaded model's weights are on (the first parameter's)."""
    return next(model.parameters()).device


def peak_memory_mib(device: Any) -> float | None:
    """Peak CUDA memory allocated on ``device`` since the last reset, in MiB; None on the CPU."""
    # torch loads in seconds: imported only where used
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def visible_gpus() -> int:
    # torch loads in seconds: imported only where used
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
