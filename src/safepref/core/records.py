"""Typed records that cross stage boundaries. Every artifact row is one of these, as JSON."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer


class Message(BaseModel):
    """One chat turn, as in TRL's conversational format."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class Prompt(BaseModel):
    """A prompt to answer. ``id`` is stable across runs (dataset name + row index)."""

    id: str
    text: str
    dataset: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)


class Response(BaseModel):
    """One answer to one prompt from one source, with its provenance."""

    prompt_id: str
    prompt: str
    source: str  # registry name, HF id/folder, "openai:<model>", or a fixed answer set such as "gpt4o"
    sample_index: int = 0  # 0..k-1 for sampled answers; -1 for the greedy answer
    text: str
    generation: dict[str, Any] = Field(default_factory=dict)  # decoding settings used
    n_tokens: int | None = None

    @property
    def id(self) -> str:
        return response_id(self.prompt_id, self.source, self.sample_index)


def response_id(prompt_id: str, source: str, sample_index: int) -> str:
    return f"{prompt_id}|{source}|{sample_index}"


class Score(BaseModel):
    """A reward model's scalar for one response."""

    response_id: str
    reward_model: str
    score: float
    key: str | None = None  # content key: reward model weights + prompt text + answer text (safepref.core.keys)


class Side(BaseModel):
    """Where one side of a pair came from."""

    source: str
    sample_index: int | None = None
    score: float | None = None


class Pair(BaseModel):
    """A preference pair in TRL's conversational format, plus the provenance of each side."""

    id: str
    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    recipe: str = ""
    chosen_from: Side | None = None
    rejected_from: Side | None = None
    debias: dict[str, Any] | None = None  # what `safepref debias` did to this pair (method, model, original text)

    @model_serializer(mode="wrap")
    def _without_absent_debias(self, handler: Any) -> dict[str, Any]:
        # a pair never debiased serialises exactly as before the field existed, so content keys of built pairs hold
        data = handler(self)
        if data.get("debias") is None:
            data.pop("debias", None)
        return data

    @property
    def prompt_text(self) -> str:
        return "\n".join(m.content for m in self.prompt if m.role == "user")

    @property
    def request_text(self) -> str:
        """The user turn both answers reply to (the last one): what a (request, answer) judge reads."""
        users = [m.content for m in self.prompt if m.role == "user"]
        return users[-1] if users else ""

    @property
    def chosen_text(self) -> str:
        return self.chosen[-1].content

    @property
    def rejected_text(self) -> str:
        return self.rejected[-1].content


class Verdict(BaseModel):
    """A judge's decision on one response. ``label`` 1 = harmful/jailbroken (or refusal, for the refusal judge)."""

    id: str
    judge: str
    label: int | None  # None = unjudged (never counted as safe)
    score: float | None = None  # e.g. the 1-5 harmfulness score of the llm judge
    gold: int | None = None  # the row's own label, when it had one
    raw: str | None = None


class LabelledResponse(BaseModel):
    """A response with a human label, for validating judges. ``label`` 1 = harmful / jailbroken."""

    prompt: str
    response: str
    label: int


class Template(BaseModel):
    """A jailbreak template; ``text`` holds the placeholder where the harmful request goes."""

    name: str
    text: str
    placeholder: str = "[INSERT PROMPT HERE]"
