"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: ``POST /v1/chat/completions``.

Answers come from a responder callable (a scripted function, or the bundled SmolLM2 via transformers). Faults can
be injected for the next N requests: ``timeout``, ``429``, ``500`` and ``malformed`` (a 200 whose body is not JSON).
Every request seen is recorded (headers and body) so tests can count retries and check where the API key went.

A ``timeout`` fault involves no clock: the server answers at once, marked late, and the ``chat_server`` fixture
makes the client's HTTP transport raise the read timeout it would have raised had the answer come after the
client's limit. Faults are counted, never timed, so a loaded machine cannot add or remove a retry.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

Responder = Callable[[list[dict[str, Any]], dict[str, Any]], str]
LATE_HEADER = "X-Test-Answer-Too-Late"  # marks the answer to a ``timeout`` fault


def echo_responder(messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
    return "echo: " + messages[-1]["content"]


@dataclass
class ChatServer:
    responder: Responder = echo_responder
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def inject(self, kind: str, times: int = 1) -> None:
        assert kind in ("timeout", "429", "500", "malformed"), kind
        with self._lock:
            self.faults.extend([kind] * times)

    def _next_fault(self) -> str | None:
        with self._lock:
            return self.faults.pop(0) if self.faults else None

    def start(self) -> ChatServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _send(self, status: int, payload: bytes, content_type: str = "application/json",
                      late: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if late:
                    self.send_header(LATE_HEADER, "1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    self.wfile.write(payload)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw or b"{}")
                with server._lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                fault = server._next_fault()
                if fault == "timeout":
                    self._send(200, b'{"late": true}', late=True)
                    return
                if fault in ("429", "500"):
                    self._send(int(fault), json.dumps({"error": {"message": f"injected {fault}"}}).encode())
                    return
                if fault == "malformed":
                    self._send(200, b'{"choices": [ this is not json')
                    return
                text = server.responder(body.get("messages", []), body)
                payload = {
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "test"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split()),
                              "total_tokens": 1 + len(text.split())},
                }
                self._send(200, json.dumps(payload).encode())

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


def smollm2_responder(model_dir, max_new_tokens: int = 32) -> Responder:
    """Answer with the real bundled SmolLM2 (greedy), through its chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    lock = threading.Lock()

    def respond(messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)
        limit = min(int(body.get("max_tokens") or max_new_tokens), max_new_tokens)
        with lock, torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=limit, do_sample=False)
        return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    return respond


def client_times_out_on_late_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the HTTP transport under the openai SDK raise a read timeout for an answer marked late."""
    import httpx2

    original = httpx2.HTTPTransport.handle_request

    def handle_request(transport: httpx2.HTTPTransport, request: httpx2.Request) -> httpx2.Response:
        response = original(transport, request)
        if LATE_HEADER.lower() in (name.lower() for name in response.headers):
            response.read()
            response.close()
            raise httpx2.ReadTimeout("injected: the answer came after the client's timeout", request=request)
        return response

    monkeypatch.setattr(httpx2.HTTPTransport, "handle_request", handle_request)


@pytest.fixture
def chat_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ChatServer]:
    client_times_out_on_late_answers(monkeypatch)
    server = ChatServer().start()
    try:
        yield server
    finally:
        server.stop()
