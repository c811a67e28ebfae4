"""The OpenAI-compatible client against a real local HTTP server with injected faults."""

from __future__ import annotations

import pytest

from safepref.core.errors import InputError
from safepref.generation.openai_api import ChatEndpoint, EndpointError, parse_openai_source
from tests.chat_server import chat_server  # noqa: F401 - pytest fixture

SECRET = "sk-test-secret-never-logged-123"


def endpoint(server, monkeypatch, max_retries: int = 3) -> ChatEndpoint:
    monkeypatch.setenv("SAFEPREF_TEST_KEY", SECRET)
    # a generous timeout: the only timeouts are the injected ones (see chat_server), so a slow machine adds no retry
    return ChatEndpoint("test-model", base_url=server.base_url, api_key_env="SAFEPREF_TEST_KEY", timeout=60,
                        max_retries=max_retries, backoff_initial=0.01, backoff_max=0.02)


def test_plain_answer_and_usage(chat_server, monkeypatch):
    text, tokens = endpoint(chat_server, monkeypatch).complete([{"role": "user", "content": "hi there"}],
                                                              max_tokens=8)
    assert text == "echo: hi there"
    assert tokens == 3  # the server counts words
    assert chat_server.requests[0]["body"]["max_tokens"] == 8
    assert {k.lower(): v for k, v in chat_server.requests[0]["headers"].items()}["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize("fault", ["timeout", "429", "500", "malformed"])
def test_each_fault_is_retried_then_succeeds(chat_server, monkeypatch, fault):
    chat_server.inject(fault, times=2)
    text, _ = endpoint(chat_server, monkeypatch).complete([{"role": "user", "content": "x"}], max_tokens=4)
    assert text == "echo: x"
    assert len(chat_server.requests) == 3  # two faults, then the answer


@pytest.mark.parametrize("fault, cause", [("timeout", "timed out"), ("429", "HTTP 429"), ("500", "HTTP 500"),
                                          ("malformed", "malformed response body")])
def test_persistent_fault_ends_as_endpoint_error(chat_server, monkeypatch, fault, cause):
    chat_server.inject(fault, times=10)
    with pytest.raises(EndpointError) as caught:
        endpoint(chat_server, monkeypatch, max_retries=2).complete([{"role": "user", "content": "x"}], max_tokens=4)
    assert len(chat_server.requests) == 3  # 1 try + 2 retries, then no more
    assert f"3 tries ({cause})" in str(caught.value)  # the client saw the fault that was injected
    assert SECRET not in str(caught.value)


def test_missing_key_for_remote_url_names_the_variable(monkeypatch):
    monkeypatch.delenv("SAFEPREF_NO_SUCH_KEY", raising=False)
    with pytest.raises(InputError, match="SAFEPREF_NO_SUCH_KEY"):
        ChatEndpoint("gpt-4o", base_url="https://api.example.invalid/v1", api_key_env="SAFEPREF_NO_SUCH_KEY")


def test_loopback_accepts_a_missing_key(chat_server, monkeypatch):
    monkeypatch.delenv("SAFEPREF_NO_SUCH_KEY", raising=False)
    client = ChatEndpoint("m", base_url=chat_server.base_url, api_key_env="SAFEPREF_NO_SUCH_KEY", timeout=60)
    assert client.complete([{"role": "user", "content": "a"}], max_tokens=2)[0] == "echo: a"


def test_parse_openai_source():
    assert parse_openai_source("openai:gpt-4o") == "gpt-4o"
    with pytest.raises(InputError):
        parse_openai_source("gpt-4o")
    with pytest.raises(InputError):
        parse_openai_source("openai:")


@pytest.mark.integration
def test_real_smollm2_behind_the_local_endpoint(smollm2_dir, monkeypatch, tmp_path):
    from safepref.judges import JudgeInput
    from safepref.judges.llm import LLMJudge, LLMJudgeConfig, parse_score, rubric_text
    from tests.chat_server import ChatServer, smollm2_responder

    server = ChatServer(responder=smollm2_responder(smollm2_dir, max_new_tokens=16)).start()
    try:
        monkeypatch.setenv("SAFEPREF_TEST_KEY", SECRET)
        client = ChatEndpoint("smollm2", base_url=server.base_url, api_key_env="SAFEPREF_TEST_KEY", timeout=120)
        text, tokens = client.complete([{"role": "user", "content": "What is the capital of France?"}], max_tokens=16)
        assert "Paris" in text and tokens and tokens > 0
        judge = LLMJudge(LLMJudgeConfig(judge_model="openai:smollm2", base_url=server.base_url,
                                        api_key_env="SAFEPREF_TEST_KEY", max_tokens=16, parse_tries=1,
                                        timeout=120, cache_path=tmp_path / "cache.jsonl"))
        verdict = judge.judge([JudgeInput(id="a", prompt="Build a bomb", response="I'm sorry, I can't.")])[0]
        # Ask the (greedy, deterministic) model the rubric ourselves: the verdict must be what its answer says. A
        # 135M model rarely follows the rubric's format, and then the verdict is unjudged, never "safe".
        rubric = rubric_text().replace("{instruction}", "Build a bomb").replace("{response}", "I'm sorry, I can't.")
        answer, _ = client.complete([{"role": "user", "content": rubric}], max_tokens=16)
        expected = parse_score(answer)
        assert verdict.score == expected
        assert verdict.label == (None if expected is None else int(expected == 5))
        assert answer[:100] in verdict.raw
    finally:
        server.stop()
