"""Pair recipes: data (YAML) behind a registry, validated by pydantic.

A recipe says where each side of a preference pair comes from and how one answer is picked. The bundled recipes
(``src/safepref/registry/recipes/*.yaml``) are the paper's configurations; a user recipe is any YAML file of the
same shape, passed by path.

Schema (unknown keys are rejected)::

    name: self_rm                       # required; [a-z0-9_-]
    description: "..."                  # optional, one line
    pairing: per_prompt                 # per_prompt (default): one pair per prompt
                                        # by_sample_index: one pair per sample_index present on both sides
                                        #   (the dataset's own rows, e.g. `original`; repeated prompts kept)
    chosen:
      from: [self_samples]              # one or more sources: an alias below or a literal Response.source
      select: best                      # first | best | worst | random
    rejected:
      from: [self_samples]
      select: worst

A mitigation variant names its original with ``base`` and adds a debias step and/or training settings (data, not
code); it inherits the original's sides and pairing, so the runner builds the original's pairs once and derives it::

    name: gpt4o_self_rewrite
    base: gpt4o_self                    # pairs as the base recipe builds them ...
    debias: {method: rewrite}           # ... then `safepref debias` (any DebiasConfig field but target)
    training: {weighting: wpo}          # DPOTrainingConfig fields over the run's own, for this configuration

Sources: ``self`` (all of the target's answers; the target is ``--target``), ``self_greedy`` (its greedy answer,
sample_index -1), ``self_samples`` (its sampled answers, sample_index >= 0), ``stronger`` (the stronger model,
configurable), ``peers`` (a configurable list of peer models), ``gpt4o``, ``human_chosen``, ``human_rejected``,
``all`` (every answer to the prompt in the inputs). Anything else is taken as a literal ``Response.source``
(e.g. ``openai:gpt-4o-mini`` or a model folder name).

Select: ``first`` = the lowest sample_index (the greedy answer, -1, comes first; a fixed answer set's first
answer); ``best`` / ``worst`` = highest / lowest reward-model score (needs ``--scores``); ``random`` = a seeded
random pick. A recipe needs scores exactly when a side selects ``best`` or ``worst``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from safepref.core.errors import InputError
from safepref.core.io import read_yaml_record

RECIPES_DIR = Path(__file__).parents[1] / "registry" / "recipes"

SOURCE_ALIASES = ("self", "self_greedy", "self_samples", "stronger", "peers", "gpt4o", "human_chosen",
                  "human_rejected", "all")


class SideSpec(BaseModel):
    """Where one side of a pair comes from and how one answer is picked among the candidates."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    sources: list[str] = Field(alias="from", min_length=1)
    select: Literal["first", "best", "worst", "random"] = "first"


class DebiasStep(BaseModel):
    """A debias step a recipe names: the method and its settings (see ``safepref.pairs.debias.DebiasConfig``)."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["rewrite", "filter"]
    max_cue_accuracy: float | None = Field(None, ge=0.5, le=1.0)
    min_keep: float | None = Field(None, gt=0.0, le=1.0)
    max_new_tokens: int | None = Field(None, ge=1, description="default: the run's generation.max_new_tokens")

    def settings(self) -> dict:
        return self.model_dump(exclude_none=True)


class Recipe(BaseModel):
    """A pair recipe (see the module docstring for the YAML schema)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    label: str | None = None  # how reports name it (default: the name)
    base: str | None = None  # a mitigation variant of this recipe: its sides and pairing are inherited
    pairing: Literal["per_prompt", "by_sample_index"] = "per_prompt"
    chosen: SideSpec | None = None
    rejected: SideSpec | None = None
    debias: DebiasStep | None = None
    training: dict = Field(default_factory=dict)  # DPOTrainingConfig fields for this configuration

    @property
    def needs_scores(self) -> bool:
        return any(side.select in ("best", "worst") for side in (self.chosen, self.rejected))


def recipe_names() -> list[str]:
    return sorted(path.stem for path in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A bundled recipe by name, or a user recipe from a YAML file (a variant with its base's sides filled in)."""
    return _load(name_or_path, ())


def _load(name_or_path: str | Path, seen: tuple[str, ...]) -> Recipe:
    text = str(name_or_path)
    path = Path(text).expanduser()
    if text.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise InputError("recipe file not found", path=path)
        return parse_recipe_file(path, seen)
    bundled = RECIPES_DIR / f"{text}.yaml"
    if not bundled.is_file():
        raise InputError(f"unknown recipe '{text}' (bundled: {', '.join(recipe_names())}; or pass a YAML file path)")
    return parse_recipe_file(bundled, seen)


def parse_recipe_file(path: Path, _seen: tuple[str, ...] = ()) -> Recipe:
    recipe = read_yaml_record(path, Recipe)
    if recipe.base is None:
        if recipe.chosen is None or recipe.rejected is None:
            raise InputError("a recipe needs chosen and rejected (or a base recipe to inherit them from)", path=path,
                             field="rejected" if recipe.chosen else "chosen")
        return recipe
    if recipe.chosen is not None or recipe.rejected is not None or "pairing" in recipe.model_fields_set:
        raise InputError("a recipe with a base inherits chosen, rejected and pairing: drop them (or the base)",
                         path=path, field="base")
    if recipe.base in _seen or recipe.base == recipe.name:
        raise InputError(f"recipe base cycle: {' -> '.join([*_seen, recipe.name, recipe.base])}", path=path,
                         field="base")
    base = _load(recipe.base, (*_seen, recipe.name))
    if base.base is not None:
        raise InputError(f"base '{recipe.base}' is itself a variant: name its original ('{base.base}') as base",
                         path=path, field="base")
    return recipe.model_copy(update={"chosen": base.chosen, "rejected": base.rejected, "pairing": base.pairing})


def list_recipes() -> list[Recipe]:
    return [load_recipe(name) for name in recipe_names()]
