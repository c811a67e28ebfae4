"""The device policy: one resolver that every stage asks where to run a model and in which precision.

    resolve_placement(device="auto", dtype="auto", parameters=None, workload=None) -> Placement(device, dtype)

Device: ``auto`` is the first CUDA device when torch sees one, else the CPU; ``cpu``, ``cuda`` and ``cuda:N`` are
taken as given (a CUDA device that is absent is an InputError, not a silent fall-back to the CPU).

Precision (``dtype="auto"``) is chosen by measurement, not by rule:
- CPU: bfloat16 for the workloads in ``BF16_WORKLOADS`` (generation, the judges' LM reads, DPO training as mixed
  precision: autocast over float32 master weights) where the CPU has bfloat16 instructions (``BF16_FLAGS``) and a
  probe measured bfloat16 at least ``BF16_MARGIN`` times as fast as float32 on that workload's kind of work
  (:func:`cpu_bf16_speedups`: measured once per CPU flag set and torch version, cached under
  ``$SAFEPREF_HOME/device/``); float32 otherwise, and for every other workload. CPUs differ: bfloat16 ran 2x slower
  than float32 on an AVX2-only CPU, and 2x faster for SmolLM2's forward pass on one with avx512_bf16
  (shared/MODELS.md). ``benchmarks/bench_bf16.py`` shows where it is safe: judge verdicts, DPO losses and greedy
  answers against float32's. ``SAFEPREF_CPU_BF16=off`` keeps float32 on any CPU.
- CUDA, models under ``SMALL_MODEL_PARAMETERS`` (1e9): float32. On one H100 a SmolLM2-135M-shaped model generated
  3,375 tok/s in float32 against 1,221 tok/s in bfloat16 at 128 rows (benchmarks/bench_generate.py): a model this
  small is bound by kernel launches, and bfloat16 only adds casts.
- CUDA, larger models (or size unknown): bfloat16 where the GPU supports it, else float16. Not measured here; a
  7B model in float32 needs 28 GB for its weights alone, and half precision is what such models ship in.
``--dtype float32|bfloat16|float16`` overrides the policy on any device.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from safepref.core.errors import InputError
from safepref.core.keys import content_key
from safepref.core.paths import safepref_home

DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda or cuda:N."
DTYPE_HELP = "auto (the device policy: bfloat16 for generation, LM reads and training on a CPU where it measured " \
             "faster; float32 for models under 1B parameters on CUDA, else bfloat16), float32, bfloat16 or float16."
DTYPES = ("auto", "float32", "bfloat16", "float16")
SMALL_MODEL_PARAMETERS = 1_000_000_000
_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")

# CPU instructions that compute bfloat16 dot products natively; without them torch emulates bfloat16 and it is slower
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Workloads whose bfloat16 results were checked against float32's (benchmarks/bench_bf16.py), each with the kind of
# work the probe times for it: inference (weights in bfloat16) or training (autocast over float32 weights).
BF16_WORKLOADS = {"generation": "inference", "lm_read": "inference", "training": "training"}
# bfloat16 only where it is at least this much faster than float32: below it, the answers that change (about half of
# SmolLM2's 48-token greedy answers differ somewhere: benchmarks/bench_bf16.py) buy too little time, and the probe's
# own figure moved by up to 15% between runs on the shared 2-core machine (inference 1.60-1.89x, training
# 1.45-1.65x: ``python -c "from safepref.core.device import measure_bf16_speedups as m; print(m())"``).
BF16_MARGIN = 1.25
BF16_ENV = "SAFEPREF_CPU_BF16"  # "off": float32 on any CPU, nothing measured
PROBE_VERSION = 1  # bumped when the probe changes, so every machine measures again
CPUINFO = Path("/proc/cpuinfo")  # Linux; elsewhere no flags are read and float32 stays

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


def choose_dtype(device: Any, requested: str = "auto", parameters: int | None = None,
                 workload: str | None = None) -> tuple[Any, str]:
    """The policy above: (torch dtype, reason). ``workload`` (one of ``BF16_WORKLOADS``, or None) says what the
    model is for; only those workloads may get bfloat16 on a CPU."""
    # torch loads in seconds: imported only where used
    import torch

    requested = check_dtype(requested)
    if requested != "auto":
        return getattr(torch, requested), "requested"
    if device.type != "cuda":
        if workload not in BF16_WORKLOADS:
            return torch.float32, "auto: float32 on the CPU"
        speedups = cpu_bf16_speedups()
        if speedups is None:
            return torch.float32, "auto: float32 on a CPU without bfloat16 instructions"
        speedup = speedups[BF16_WORKLOADS[workload]]
        if speedup >= BF16_MARGIN:
            return torch.bfloat16, f"auto: bfloat16 for {workload} on this CPU ({speedup:.2f}x float32, measured)"
        return torch.float32, f"auto: float32 for {workload} on this CPU (bfloat16 {speedup:.2f}x, under {BF16_MARGIN}x)"
    if parameters is not None and parameters < SMALL_MODEL_PARAMETERS:
        return torch.float32, f"auto: float32 for a {parameters / 1e6:.0f}M-parameter model on CUDA (measured faster)"
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, "auto: bfloat16 for a large (or unsized) model on a GPU that supports it"
    return torch.float16, "auto: float16 for a large (or unsized) model on a GPU without bfloat16"


def resolve_placement(device: str = "auto", dtype: str = "auto", parameters: int | None = None,
                      workload: str | None = None) -> Placement:
    """One call for a stage: where to run and in which precision (``parameters`` and ``workload`` feed the dtype
    policy)."""
    resolved = resolve_device(device)
    chosen, reason = choose_dtype(resolved, dtype, parameters, workload)
    return Placement(resolved, chosen, reason)


def precision_key(dtype_name: str) -> dict[str, str]:
    """The part of a content key that a precision adds: nothing for float32 (keys made before precision was keyed
    stay valid), ``{"dtype": name}`` otherwise."""
    return {} if dtype_name == "float32" else {"dtype": dtype_name}


def precision_record(device: str = "auto", dtype: str = "auto") -> dict[str, Any]:
    """What the precision policy chose for each workload of a run (for its manifest): the dtype and why, the CPU's
    bfloat16 flags and the measured speedups. On CUDA ``auto`` depends on each model's size: recorded as such."""
    resolved = resolve_device(device)
    if resolved.type == "cuda" and check_dtype(dtype) == "auto":
        workloads = {name: {"dtype": "auto", "reason": "per model size on CUDA (each artifact records its own)"}
                     for name in BF16_WORKLOADS}
    else:
        workloads = {}
        for name in BF16_WORKLOADS:
            chosen, reason = choose_dtype(resolved, dtype, None, name)
            workloads[name] = {"dtype": str(chosen).removeprefix("torch."), "reason": reason}
        if workloads["training"]["dtype"] == "bfloat16":
            workloads["training"]["dtype"] = "bfloat16 autocast over float32 weights"
    speedups = cpu_bf16_speedups() if resolved.type == "cpu" else None
    return {"device": str(resolved), "requested": check_dtype(dtype), "workloads": workloads,
            "cpu_bf16_flags": sorted(cpu_flags() & set(BF16_FLAGS)), "cpu_bf16_speedups": speedups,
            "margin": BF16_MARGIN}


# ---------------------------------------------------------------------------------------------- CPU bfloat16


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``); empty where the system does not say (nothing is assumed)."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    line = next((row for row in text.splitlines() if row.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def cpu_bf16_speedups() -> dict[str, float] | None:
    """float32 time over bfloat16 time of the probe, per kind of work (``inference``, ``training``); None where the
    CPU has no bfloat16 instructions or ``SAFEPREF_CPU_BF16=off`` (nothing measured then). Measured once per CPU flag
    set and torch version: the file under ``$SAFEPREF_HOME/device/`` holds it for every later process."""
    if os.environ.get(BF16_ENV, "").strip().lower() == "off":
        return None
    flags = cpu_flags()
    if not flags & set(BF16_FLAGS):
        return None
    return _cached_speedups(flags)


@cache
def _cached_speedups(flags: frozenset[str]) -> dict[str, float]:
    # torch loads in seconds: imported only where used
    import torch

    path = safepref_home() / "device" / f"cpu-bf16-{content_key(sorted(flags), torch.__version__, PROBE_VERSION)}.json"
    if path.is_file():
        return json.loads(path.read_text())["speedups"]
    measured = measure_bf16_speedups()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"speedups": measured, "torch": torch.__version__, "threads": torch.get_num_threads(),
                               "bf16_flags": sorted(flags & set(BF16_FLAGS))}) + "\n")
    os.replace(tmp, path)  # two processes measuring at once each write a whole file; the last one stays
    return measured


def measure_bf16_speedups(repeats: int = 3) -> dict[str, float]:
    """Time a stack of SmolLM2-135M-shaped blocks (width 576, MLP 1536) in float32 and in bfloat16: ``inference``
    runs it forward with bfloat16 weights over 4 x 128 tokens and 8 times over 64 rows of one token (decoding steps);
    ``training`` runs forward and backward over 4 x 128 tokens under autocast with float32 weights. The best of
    ``repeats`` runs of each, interleaved, so a moment of load elsewhere hits both sides. A few seconds on 2 idle
    cores (a minute when they are shared with other work); once per machine."""
    # torch loads in seconds: imported only where used
    import torch

    generator = torch.Generator().manual_seed(0)
    width, hidden, layers = 576, 1536, 2

    def block() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(width, 3 * width), torch.nn.Linear(3 * width, width),
                                   torch.nn.Linear(width, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, width))

    model = torch.nn.Sequential(*(block() for _ in range(layers)))
    low = torch.nn.Sequential(*(block() for _ in range(layers))).to(torch.bfloat16)
    low.load_state_dict({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()})
    prompts = torch.randn(4 * 128, width, generator=generator)
    step = torch.randn(64, width, generator=generator)

    def infer(net: torch.nn.Module, dtype: Any) -> None:
        with torch.inference_mode():
            net(prompts.to(dtype))
            for _ in range(8):
                net(step.to(dtype))

    def train(autocast: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(prompts).float().square().mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    runs = {"inference": (lambda: infer(model, torch.float32), lambda: infer(low, torch.bfloat16)),
            "training": (lambda: train(False), lambda: train(True))}
    best = {name: [float("inf"), float("inf")] for name in runs}
    for name, pair in runs.items():
        for run in pair:
            run()  # warm-up: oneDNN picks its kernels on the first call
        for _ in range(repeats):
            for side, run in enumerate(pair):
                started = time.perf_counter()
                run()
                best[name][side] = min(best[name][side], time.perf_counter() - started)
    return {name: round(full / low_time, 3) for name, (full, low_time) in best.items()}


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
