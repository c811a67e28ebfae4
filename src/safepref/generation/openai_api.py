"""One client for every OpenAI-compatible chat endpoint (judges and generation sources).

The ``openai`` SDK does the HTTP; its own retries are off so that ``tenacity`` owns one bounded retry policy:
exponential backoff on timeouts, connection errors, 429, 5xx and malformed bodies (no choices / no content).
The API key comes only from an environment variable and never appears in an error message or artifact.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlparse

import openai
from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from safepref.core.errors import InputError

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class EndpointError(RuntimeError):
    """The endpoint kept failing after the bounded retries (or refused the request outright)."""


class MalformedResponse(RuntimeError):
    """The endpoint answered 200 but without choices or content: worth another try."""


def parse_openai_source(source: str) -> str:
    """``"openai:gpt-4o"`` -> ``"gpt-4o"``; anything else is an InputError."""
    prefix = "openai:"
    if not source.startswith(prefix) or not source[len(prefix):].strip():
        raise InputError(f"expected an endpoint model as 'openai:<model>', got '{source}'")
    return source[len(prefix):].strip()


def _retryable(error: BaseException) -> bool:
    if isinstance(error, (openai.APITimeoutError, openai.APIConnectionError, MalformedResponse)):
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code == 429 or error.status_code >= 500
    return False


class ChatEndpoint:
    """A chat-completions endpoint with bounded, exponential-backoff retries.

    ``base_url`` defaults to ``$OPENAI_BASE_URL`` (then the SDK's default). The key is read from ``api_key_env``;
    a loopback URL accepts a dummy key. ``backoff_initial`` / ``backoff_max`` (seconds) are the exponential
    wait between tries; tests make them tiny.
    """

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60.0, max_retries: int = 5, backoff_initial: float = 1.0,
                 backoff_max: float = 30.0) -> None:
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.max_retries = max_retries
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        host = urlparse(self.base_url).hostname if self.base_url else None
        api_key = os.environ.get(api_key_env)
        if not api_key:
            if host not in LOCAL_HOSTS:
                raise InputError(f"no API key: set the environment variable {api_key_env} "
                                 f"(endpoint {self.base_url or 'api.openai.com'})")
            api_key = "local-dummy-key"
        self._client = openai.OpenAI(api_key=api_key, base_url=self.base_url, timeout=timeout, max_retries=0)

    def _complete_once(self, messages: list[dict], **params) -> tuple[str, int | None]:
        try:
            completion = self._client.chat.completions.create(model=self.model, messages=messages, **params)
        except (json.JSONDecodeError, openai.APIResponseValidationError) as error:
            raise MalformedResponse("the endpoint answered with a body that is not a chat completion") from error
        choices = getattr(completion, "choices", None)
        if not choices or choices[0].message is None or choices[0].message.content is None:
            raise MalformedResponse("the endpoint answered without choices[0].message.content")
        usage = getattr(completion, "usage", None)
        return choices[0].message.content, getattr(usage, "completion_tokens", None)

    def complete(self, messages: list[dict], *, max_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None) -> tuple[str, int | None]:
        """Return ``(text, completion_tokens)``; raise EndpointError after the last retry."""
        params = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p}
        if seed is not None:
            params["seed"] = seed
        retrying = Retrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential(multiplier=self.backoff_initial, max=self.backoff_max),
            reraise=False,
        )
        try:
            return retrying(self._complete_once, messages, **params)
        except RetryError as error:
            last = error.last_attempt.exception()
            raise EndpointError(f"{self._where()}: gave up after {self.max_retries + 1} tries "
                                f"({_describe(last)})") from None
        except openai.APIStatusError as error:  # 4xx other than 429: retrying will not help
            raise EndpointError(f"{self._where()}: request refused ({_describe(error)})") from None
        except openai.OpenAIError as error:
            raise EndpointError(f"{self._where()}: {_describe(error)}") from None

    def _where(self) -> str:
        return f"endpoint {self.base_url or 'api.openai.com'} model '{self.model}'"


def _describe(error: BaseException | None) -> str:
    """A short cause without echoing request headers (where a key could hide)."""
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}"
    if isinstance(error, openai.APITimeoutError):
        return "timed out"
    if isinstance(error, openai.APIConnectionError):
        return "connection failed"
    if isinstance(error, MalformedResponse):
        return "malformed response body"
    return type(error).__name__ if error is not None else "unknown error"
