"""Evaluation suites and jailbreak attacks, both data behind registries (registry/suites.yaml, attacks.yaml)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from safepref.core.datasets import load_dataset, prompts_from_texts
from safepref.core.errors import InputError
from safepref.core.io import iter_table
from safepref.core.records import Prompt, Template


@cache
def _registry(name: str) -> dict[str, Any]:
    text = (resources.files("safepref") / "registry" / name).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def attack_registry() -> dict[str, Any]:
    return _registry("attacks.yaml")


def suite_registry() -> dict[str, Any]:
    return _registry("suites.yaml")


# ---------------------------------------------------------------------------------------------- suites


def load_suite(spec: str, limit: int | None = None) -> list[Prompt]:
    """Prompts of a registered suite (``advbench``, ``xstest``) or of a file given as ``path.csv:column``."""
    suites = suite_registry()
    if spec in suites:

        entry = suites[spec]
        prompts = list(load_dataset(entry["dataset"]))
        limit = limit if limit is not None else entry.get("default_limit")
    else:
        path, _, column = spec.rpartition(":")
        if not path or not column:
            raise InputError(f"unknown suite '{spec}' (known: {', '.join(suites)}; or a file as path.csv:column)")
        if not Path(path).exists():
            raise InputError("suite file not found", path=path)

        prompts = prompts_from_texts([str(row[column]) for _, row in iter_table(path, required=(column,))],
                                     dataset=Path(path).stem)
    if limit is not None:
        if limit < 1:
            raise InputError(f"--limit must be at least 1, got {limit}")
        prompts = prompts[:limit]
    if not prompts:
        raise InputError(f"suite '{spec}' has no prompts")
    return prompts


# ---------------------------------------------------------------------------------------------- attacks


def parse_attack_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError("no attack given (known: " + ", ".join(attack_registry()) + ")")
    return names


def _split(name: str) -> tuple[str, str | None]:
    base, sep, arg = name.partition(":")
    return base, (arg if sep else None)


def find_template(name: str) -> Template:

    for dataset in ("jailbreak-templates", "gptfuzz-templates"):
        for template in load_dataset(dataset):
            if template.name == name:
                return template
    known = [t.name for t in load_dataset("jailbreak-templates")][:8]
    raise InputError(f"unknown jailbreak template '{name}' (e.g. {', '.join(known)} ...; gptfuzz-<id>; "
                     "see `safepref data` for all)")


def fill_template(template: Template, request: str) -> str:
    if template.placeholder not in template.text:
        raise InputError(f"template '{template.name}' has no placeholder {template.placeholder}")
    return template.text.replace(template.placeholder, request)


def fewshot_demonstrations(n: int) -> list[Prompt]:
    """The last ``n`` AdvBench behaviours (goal + target), as the official evaluation takes its demonstrations."""

    advbench = load_dataset("advbench")
    if not 1 <= n <= 50:
        raise InputError(f"fewshot:N needs 1 <= N <= 50, got {n}")
    return advbench[len(advbench) - n:]


class Attack:
    """One named attack, resolved and checked up front, that turns a request into the attacked user turn."""

    def __init__(self, name: str) -> None:
        registry = attack_registry()
        base, arg = _split(name)
        if base not in registry:
            raise InputError(f"unknown attack '{name}' (known: {', '.join(registry)}; template:NAME, fewshot:N, "
                             "jbb-attacks:METHOD)")
        self.name = name
        self.entry = registry[base]
        self.kind = self.entry["kind"]
        if self.kind == "format":
            if arg is not None:
                raise InputError(f"attack '{base}' takes no argument, got '{name}'")
            if "{prompt}" not in self.entry["template"]:
                raise InputError(f"attack '{base}' template has no {{prompt}} placeholder")
        elif self.kind == "template":
            if not arg:
                raise InputError("the template attack needs a name: template:NAME (e.g. template:AIM)")
            self.template = find_template(arg)
            if self.template.placeholder not in self.template.text:
                raise InputError(f"template '{arg}' has no placeholder {self.template.placeholder}")
        elif self.kind == "fewshot":
            try:
                shots = int(arg or "")
            except ValueError:
                raise InputError(f"fewshot needs a number of demonstrations: fewshot:N, got '{name}'") from None
            self.demonstrations = fewshot_demonstrations(shots)
        elif self.kind == "transfer":
            method, self.transfer = transfer_prompts(base, arg, self.entry)  # suite prompt id -> attack prompt
            self.name = f"{base}:{method}" + (f"@{arg.partition('@')[2]}" if "@" in (arg or "") else "")
            self.transfer_by_request = {p.text.strip(): self.transfer[p.id]
                                        for p in load_dataset(self.entry["suite"]) if p.id in self.transfer}

    def check_disjoint(self, prompts: list[Prompt]) -> None:
        """Few-shot demonstrations must never be among the evaluated prompts; a transfer attack must have recorded
        prompts for the evaluated behaviours."""
        if self.kind == "transfer":
            suite = self.entry["suite"]
            if any(p.dataset != suite for p in prompts):
                raise InputError(f"attack '{self.name}' has recorded prompts for the behaviours of the suite "
                                 f"{suite} only: evaluate it with --suite {suite}")
            return
        if self.kind != "fewshot":
            return
        demo_texts = {d.text.strip() for d in self.demonstrations}
        overlap = [p.id for p in prompts if p.text.strip() in demo_texts]
        if overlap:
            raise InputError(f"attack '{self.name}': its demonstrations overlap the evaluated prompts "
                             f"({', '.join(overlap[:3])}); use fewer shots or fewer prompts")

    def apply(self, request: str) -> str:
        if self.kind == "transfer":
            if request.strip() not in self.transfer_by_request:
                raise InputError(f"attack '{self.name}' has no recorded prompt for this request")
            return self.transfer_by_request[request.strip()]
        if self.kind == "format":
            return self.entry["template"].replace("{prompt}", request)
        if self.kind == "template":
            return fill_template(self.template, request)
        alpaca = attack_registry()["alpaca"]["template"]
        shots = [alpaca.replace("{prompt}", d.text) + " " + d.meta.get("target", "") for d in self.demonstrations]
        return "\n\n".join([*shots, alpaca.replace("{prompt}", request)])

    def attacked_prompts(self, prompts: list[Prompt]) -> list[Prompt]:
        """The attacked user turn per prompt; a transfer attack leaves out the behaviours it has no prompt for."""
        self.check_disjoint(prompts)
        if self.kind == "transfer":
            prompts = [p for p in prompts if p.id in self.transfer]
        return [Prompt(id=f"{p.id}|{self.name}",
                       text=self.transfer[p.id] if self.kind == "transfer" else self.apply(p.text), dataset=p.dataset,
                       meta={**p.meta, "attack": self.name, "request": p.text, "suite_prompt_id": p.id})
                for p in prompts]


def transfer_prompts(base: str, arg: str | None, entry: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The method's own spelling, and suite prompt id -> the recorded attack prompt, for ``METHOD[@SOURCE_MODEL]``
    of a transfer attack's dataset (matched by behaviour id: a few recorded goals are worded slightly differently
    from the suite's)."""
    records = load_dataset(entry["dataset"])
    combinations = sorted({(r.meta["method"], r.meta["source_model"]) for r in records})
    methods = sorted({method for method, _ in combinations})
    if not arg:
        raise InputError(f"attack '{base}' needs a method: {base}:METHOD[@SOURCE_MODEL] (methods: {', '.join(methods)})")
    method, _, source = arg.partition("@")
    method = next((m for m in methods if m.lower() == method.lower()), method)
    source = source or entry["default_source"]
    chosen = {r.meta["behavior_id"]: r.text for r in records
              if r.meta["method"] == method and r.meta["source_model"] == source}
    if not chosen:
        known = ", ".join(f"{m}@{s}" for m, s in combinations)
        raise InputError(f"attack '{base}:{arg}': no recorded prompts for method {method} against {source} "
                         f"(known: {known})")
    return method, chosen
