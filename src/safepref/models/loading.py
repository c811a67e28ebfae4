"""The one loader API: models prepared, loaded, labelled and fingerprinted.

A model is named by a registry short name (the bundled models: :mod:`safepref.models.registry`, re-exported here),
a Hugging Face id, or a local folder (a plain HF folder, a prepared registry model, or a LoRA adapter folder from
``safepref train``).
Bundled GGUF files are verified by sha256 and converted once into a cached float32 HF folder: a model loaded
straight from GGUF is flagged as quantized and cannot be trained (see shared notes), and the folder loads
10-20x faster.
"""


from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from filelock import FileLock

from safepref.core.device import Placement, check_dtype, choose_dtype, resolve_device
from safepref.core.errors import InputError
from safepref.core.keys import content_key
from safepref.core.paths import safepref_home
from safepref.models.names import display_name, model_label, set_display_name
from safepref.models.precision import float32_head
from safepref.models.registry import (
    DEFAULT_TARGET,
    EMBEDDING_MODEL,
    REGISTRY,
    STRONGER_MODEL,
    BundledModel,
    canonical_name,
    get_bundled,
    sha256_of,
    verify_model,
)

__all__ = ["CONFIG_FILES", "DEFAULT_TARGET", "EMBEDDING_MODEL", "READY_MARKER", "REGISTRY", "STRONGER_MODEL",
           "WEIGHT_SUFFIXES", "BundledModel", "display_name", "dtype_name_for", "get_bundled", "is_adapter",
           "is_prepared", "load_embedder",
           "load_model", "load_tokenizer", "merged_adapter_dir", "model_label", "parameter_count", "placement_for",
           "prepare_model", "prepared_dir", "resolve_model_path", "set_display_name",
           "sha256_of", "verify_model", "weights_fingerprint"]

READY_MARKER = "safepref-prepared.json"


# ---------------------------------------------------------------------------------------------- prepare


def prepared_dir(name: str) -> Path:
    return safepref_home() / "models" / canonical_name(name)


def is_prepared(name: str) -> bool:
    return (prepared_dir(name) / READY_MARKER).is_file()


def prepare_model(name: str) -> Path:
    """Convert a bundled GGUF model once into a float32 HF folder under SAFEPREF_HOME; returns the folder.

    The folder is built under a temporary name and renamed into place with a marker file last, so an
    interrupted or concurrent preparation never leaves a folder that is later used.
    """
    model = get_bundled(name)
    if model.kind == "sentence-transformers":
        verify_model(name)
        return model.part_paths()[0].parent
    final = prepared_dir(name)
    if is_prepared(name):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    # concurrent preparations of one model wait for each other instead of racing
    with FileLock(final.parent / f".{name}.lock"):
        if is_prepared(name):  # another process finished while we waited
            return final
        verify_model(name)
        work = final.parent / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            _convert_gguf(model, work)
            (work / READY_MARKER).write_text(json.dumps({"name": name, "sha256": model.sha256}) + "\n")
            shutil.rmtree(final, ignore_errors=True)  # a stale folder without its marker
            os.replace(work, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def _convert_gguf(model: BundledModel, out: Path) -> None:
    # torch and transformers load in seconds: imported only where used
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parts = model.part_paths()
    gguf_dir = out / "_gguf"
    gguf_dir.mkdir()
    gguf_file = gguf_dir / model.filename
    if len(parts) == 1:
        gguf_file.symlink_to(parts[0])
    else:
        with open(gguf_file, "wb") as sink:
            for part in parts:
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, sink, 1 << 20)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=model.filename)
    causal_lm = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=model.filename, dtype=torch.float32)
    # Dequantized GGUF weights are float32 but transformers still flags the model as quantized, which makes
    # TRL refuse to train it: clear the flags before saving.
    causal_lm.is_quantized = False
    causal_lm.hf_quantizer = None
    if hasattr(causal_lm.config, "quantization_config"):
        del causal_lm.config.quantization_config
    causal_lm.save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.rmtree(gguf_dir)


# ---------------------------------------------------------------------------------------------- loading


def resolve_model_path(name_or_path: str | Path) -> str:
    """A registry name (prepared on first use), a local folder, or a Hugging Face id, as a from_pretrained path."""
    text = str(name_or_path)
    if text in REGISTRY:
        if REGISTRY[text].kind != "gguf":
            raise InputError(f"model '{text}' is an embedding model, not a causal language model")
        return str(prepare_model(text))
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir() or not ((path / "config.json").exists() or (path / "adapter_config.json").exists()):
            raise InputError("not a model folder (no config.json or adapter_config.json)", path=path)
        return str(path)
    if text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise InputError(f"unknown model '{text}' (not a bundled name, an existing folder, or an org/name hub id; "
                         f"bundled: {', '.join(REGISTRY)})")
    return text  # a hub id: from_pretrained fetches it for users with access


def is_adapter(path: str) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def load_tokenizer(name_or_path: str | Path):
    """Tokenizer that pads on the left (for batched generation) and always has a pad token."""
    # transformers loads in seconds: imported only where used
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    if is_adapter(path) and not (Path(path) / "tokenizer_config.json").exists():
        path = resolve_model_path(_adapter_base(path))
    tokenizer = _from_pretrained(AutoTokenizer, path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str | Path, *, merge_adapter: bool = True, dtype: Any = None, device: str = "cpu",
               workload: str | None = None):
    """Causal LM in eval mode on ``device`` (see safepref.core.device), float32 unless ``dtype`` says otherwise.

    ``dtype`` is a torch dtype, a policy name (``auto``, ``float32``, ``bfloat16``, ``float16``) or None (float32);
    ``workload`` (safepref.core.device.BF16_WORKLOADS) is what the model is loaded for, which ``auto`` may read.
    A LoRA adapter folder (from ``safepref train --lora``) is loaded onto its base model; with
    ``merge_adapter`` the adapter is merged so generation runs at full speed.
    """
    # torch and transformers load in seconds: imported only where used
    import torch
    from transformers import AutoModelForCausalLM

    target = resolve_device(device)
    path = resolve_model_path(name_or_path)
    base_path = resolve_model_path(_adapter_base(path)) if is_adapter(path) else path
    dtype = _policy_dtype(dtype, target, base_path, workload)
    if is_adapter(path):
        # peft loads in seconds: imported only where used
        from peft import PeftModel

        base = _from_pretrained(AutoModelForCausalLM, base_path, dtype=dtype)
        model = PeftModel.from_pretrained(base, path)
        if merge_adapter:
            model = model.merge_and_unload()
    else:
        model = _from_pretrained(AutoModelForCausalLM, path, dtype=dtype)
    if target.type != "cpu":
        model = model.to(target)
    elif workload == "generation" and dtype == torch.bfloat16:
        float32_head(model)
    model.eval()
    return model


def _policy_dtype(dtype: Any, device: Any, path: str, workload: str | None = None):
    """A torch dtype from an explicit one, a policy name, or None (float32: the CPU default)."""
    # torch loads in seconds: imported only where used
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    return placement_for(path, device, dtype, workload).dtype


def placement_for(path: str, device: Any = "auto", dtype: str = "auto", workload: str | None = None):
    """The device policy (safepref.core.device) for the model at ``path``: its size is counted only when the policy
    needs it (``auto`` precision on CUDA), so the CPU path never pays for it."""

    target = resolve_device(device) if isinstance(device, str) else device
    parameters = parameter_count(path) if str(dtype) == "auto" and target.type == "cuda" else None
    chosen, reason = choose_dtype(target, dtype, parameters, workload)
    return Placement(target, chosen, reason)


def dtype_name_for(name_or_path: str | Path, device: str = "auto", dtype: str = "auto",
                   workload: str | None = None) -> str:
    """The precision the policy gives this model for ``workload`` (``float32``, ``bfloat16``...), for content keys;
    the model's path is resolved only where the policy reads its size (``auto`` on CUDA)."""
    target = resolve_device(device)
    needs_size = check_dtype(dtype) == "auto" and target.type == "cuda"
    path = resolve_model_path(name_or_path) if needs_size else str(name_or_path)
    return placement_for(path, target, dtype, workload).dtype_name


def parameter_count(path: str) -> int | None:
    """Backbone parameters of a model from its config alone (built on the meta device, no weights read); None if
    the config cannot be read."""
    try:
        # accelerate and transformers load in seconds: imported only where used
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(path)
        with init_empty_weights():
            skeleton = AutoModel.from_config(config)
        return sum(p.numel() for p in skeleton.parameters())
    except (OSError, ValueError, KeyError):
        return None


def merged_adapter_dir(adapter_path: str) -> Path:
    """A LoRA adapter merged into its base and saved as a whole model (for engines that load only whole models,
    such as vLLM), once per adapter content under ``$SAFEPREF_HOME/merged/``."""

    files = sorted(p for p in Path(adapter_path).iterdir() if p.is_file())
    final = safepref_home() / "merged" / content_key([(p.name, sha256_of([p])) for p in files])
    if (final / READY_MARKER).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(final.parent / f".{final.name}.lock"):
        if (final / READY_MARKER).is_file():
            return final
        work = final.parent / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            load_model(adapter_path, merge_adapter=True).save_pretrained(work)
            load_tokenizer(adapter_path).save_pretrained(work)
            (work / READY_MARKER).write_text(json.dumps({"adapter": str(adapter_path)}) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(work, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def _adapter_base(path: str) -> str:
    config = json.loads((Path(path) / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise InputError("adapter has no base_model_name_or_path", path=Path(path) / "adapter_config.json")
    return base


def _from_pretrained(cls: Any, path: str, **kwargs: Any):
    try:
        return cls.from_pretrained(path, **kwargs)
    except OSError as error:
        raise InputError(f"cannot load model '{path}': {str(error).splitlines()[0]}") from None


def load_embedder(name: str = EMBEDDING_MODEL, device: str = "cpu"):
    """Sentence-transformers embedding model (bundled MiniLM by default, or any folder / hub id) on ``device``."""
    # sentence-transformers loads in seconds: imported only where used
    from sentence_transformers import SentenceTransformer

    if name in REGISTRY:
        if REGISTRY[name].kind != "sentence-transformers":
            raise InputError(f"model '{name}' is not an embedding model")
        folder = str(prepare_model(name))
    else:
        folder = name
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    return SentenceTransformer(folder, device=str(resolve_device(device)))


# ---------------------------------------------------------------------------------------------- identity

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".npy")
CONFIG_FILES = ("config.json", "adapter_config.json", "generation_config.json")
# the Trainer's own state beside the weights: training_args.bin pickles the output path, so hashing it made the
# same weights in two run folders two models
TRAINER_STATE_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt")
_SAMPLE_BYTES = 1 << 16  # bytes read at each of a few places of a large weight file: a retrain changes them all
_FULL_HASH_BYTES = 64 << 20  # files up to this size (LoRA adapters, small models) are hashed whole


def weights_fingerprint(name_or_path: str | Path) -> str:
    """Identity of a model's weights, for cache keys: changes when the weights change, cheap to compute.

    A bundled model is its pinned sha256; a folder hashes the size and sampled bytes (start, quarters, end) of every
    weight file plus its config files (an adapter folder adds its base's fingerprint); a hub id is the id and the
    revision found in the local HF cache; anything else (``openai:<model>``, a fixed answer set) is its name.
    """
    text = str(name_or_path)
    if text in REGISTRY:
        return f"sha256:{REGISTRY[text].sha256[:24]}"
    path = Path(text).expanduser()
    if path.is_dir():
        return "files:" + _folder_fingerprint(path)
    if path.is_file():
        return "file:" + _sampled_file_digest(path)
    if text.count("/") == 1 and not text.startswith(("openai:", ".", "/", "~")):
        return f"hub:{text}@{_hub_revision(text) or 'unknown-revision'}"
    return f"name:{text}"


def _folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "checkpoint-" not in str(p.relative_to(folder))
                   and (p.suffix in WEIGHT_SUFFIXES or p.name in CONFIG_FILES) and p.name not in TRAINER_STATE_FILES)
    for path in files:
        digest.update(f"{path.relative_to(folder)}\0{_sampled_file_digest(path)}\0".encode())
    if (folder / "adapter_config.json").is_file():
        base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if base:
            digest.update(f"base\0{weights_fingerprint(base)}".encode())
    return digest.hexdigest()[:24]


def _sampled_file_digest(path: Path) -> str:
    """sha256 of a file's size and bytes: whole up to 64 MiB, else 64 KiB at its start, quarters and end."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        if size <= _FULL_HASH_BYTES:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        else:
            for offset in (0, size // 4, size // 2, 3 * size // 4, size - _SAMPLE_BYTES):
                handle.seek(offset)
                digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()[:24]


def _hub_revision(repo_id: str) -> str | None:
    """The commit the local HF cache resolves ``main`` to, when the model was downloaded."""
    hub_cache = Path(os.environ.get("HF_HUB_CACHE", Path(os.environ.get("HF_HOME", Path.home() / ".cache" /
                                                                         "huggingface")) / "hub"))
    ref = hub_cache / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
    return ref.read_text().strip() if ref.is_file() else None
