"""Every limit, every upstream fault and guardrail faults (on_error both ways), against a stub upstream on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import ClassVar

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.security.limits import GenerationLimiter
from greenlist.clock import ManualClock
from guardrails import Decision, Direction, Guardrail, GuardrailConfig, GuardrailResult
from tests.reliability_fixtures import assert_openai_error, chat_body, gateway_with


def _client(gw, **settings):
    from gateway.api.app import create_app

    return TestClient(create_app(gw.settings.model_copy(update=settings), gateway=gw))


# --- limits ------------------------------------------------------------------------------------------------------
def test_body_size_limit(fast_gateway):
    with _client(gateway_with(fast_gateway), max_request_bytes=2048) as c:
        err = assert_openai_error(c.post("/v1/moderations", json={"input": "x" * 4000}), 413, "request_too_large")
        assert "max_request_bytes" in err["message"]

        def chunks():  # no Content-Length: read up to the limit, then refused
            for _ in range(10):
                yield b" " * 1000

        r = c.post("/v1/moderations", content=chunks(), headers={"content-type": "application/json"})
        assert_openai_error(r, 413, "request_too_large")
        assert c.post("/v1/moderations", json={"input": "fine"}).status_code == 200


def test_prompt_token_and_max_tokens_limits(fast_gateway):
    gw = gateway_with(fast_gateway, max_prompt_tokens=50, max_new_tokens_limit=64)
    with _client(gw) as c:
        err = assert_openai_error(
            c.post("/v1/chat/completions", json=chat_body("lighthouse " * 100)), 400, "context_length_exceeded"
        )
        assert "max_prompt_tokens=50" in err["message"] and err["param"] == "messages"
        r = c.post("/v1/completions", json={"model": "stub-model", "prompt": "word " * 200})
        assert assert_openai_error(r, 400, "context_length_exceeded")["param"] == "prompt"
        err = assert_openai_error(
            c.post("/v1/chat/completions", json=chat_body(max_tokens=65)), 400, "max_tokens_limit"
        )
        assert "max_new_tokens_limit=64" in err["message"]
        assert c.post("/v1/chat/completions", json=chat_body(max_tokens=16)).status_code == 200


def test_text_length_limits(fast_gateway):
    with _client(gateway_with(fast_gateway), max_text_chars=100, max_moderation_inputs=3) as c:
        for path, body, param in (
            ("/v1/watermark/verify", {"text": "a" * 101}, "text"),
            ("/v1/moderations", {"input": ["ok", "b" * 101]}, "input[1]"),
            ("/v1/guardrails/check", {"text": "c" * 101}, "text"),
        ):
            err = assert_openai_error(c.post(path, json=body), 400, "text_too_long")
            assert "max_text_chars=100" in err["message"] and err["param"] == param
        err = assert_openai_error(c.post("/v1/moderations", json={"input": ["a"] * 4}), 400, "too_many_inputs")
        assert "max_moderation_inputs=3" in err["message"]


def test_generation_limiter_queue_then_429():
    async def run():
        limiter = GenerationLimiter(capacity=1, max_queue=1, max_wait_s=0.2)
        first = await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.01)
        with pytest.raises(Exception) as full:  # queue of 1 is taken
            await limiter.acquire()
        assert full.value.status == 429 and "generation_queue_size=1" in full.value.message
        with pytest.raises(Exception) as timed_out:
            await waiter  # waited 0.2 s without a slot
        assert timed_out.value.status == 429 and int(timed_out.value.headers["Retry-After"]) >= 1
        first.release()
        first.release()  # idempotent
        second = await limiter.acquire()
        assert limiter.active == 1
        second.release()
        assert limiter.active == 0

    asyncio.run(run())


def test_concurrent_generations_429_over_http(fast_gateway, stub_upstream):
    from gateway.api.app import create_app
    from tests.conftest import ServerThread

    gw = gateway_with(fast_gateway, "endless", stub_upstream)
    # an openai upstream gets its own limit (max_concurrent_upstream), separate from the local model's
    settings = gw.settings.model_copy(update={"max_concurrent_upstream": 1, "generation_queue_size": 0})
    with ServerThread(create_app(settings, gateway=gw)) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        with c.stream("POST", "/v1/chat/completions", json=chat_body(stream=True, max_tokens=1000)) as first:
            assert first.status_code == 200
            lines = first.iter_lines()  # keep a reference: a collected iterator closes the response
            next(lines)
            r = c.post("/v1/chat/completions", json=chat_body(max_tokens=8))
            err = assert_openai_error(r, 429, "too_many_concurrent_generations")
            assert "max_concurrent_upstream=1" in err["message"] and int(r.headers["retry-after"]) >= 1
        deadline = time.time() + 10  # the slot comes back once the first client left
        while time.time() < deadline:
            r = c.post("/v1/completions", json={"model": "stub-model", "prompt": "hi", "max_tokens": 8})
            if r.status_code != 429:
                break
            time.sleep(0.1)
        assert r.status_code == 502 or r.status_code == 200, r.text  # endless mode answers non-streamed fine


# --- upstream faults ---------------------------------------------------------------------------------------------
def test_upstream_500_retried_then_502(fast_gateway, stub_upstream):
    gw = gateway_with(fast_gateway, "fail500", stub_upstream, upstream_retries=2, upstream_breaker_failures=100)
    before = stub_upstream.state["hits"]["fail500"]
    with _client(gw) as c:
        for stream in (False, True):
            err = assert_openai_error(
                c.post("/v1/chat/completions", json=chat_body(stream=stream)), 502, "upstream_error"
            )
            assert "model overloaded" in err["message"]
    assert stub_upstream.state["hits"]["fail500"] - before == 6  # 1 + 2 retries, twice


def test_upstream_flaky_recovers_by_retry(fast_gateway, stub_upstream):
    gw = gateway_with(fast_gateway, "flaky", stub_upstream, upstream_retries=2)
    stub_upstream.state["fail_next"] = 2
    with _client(gw) as c:
        r = c.post("/v1/chat/completions", json=chat_body())
    assert r.status_code == 200, r.text
    assert "Lighthouses" in r.json()["choices"][0]["message"]["content"]


def test_upstream_read_timeout_is_504_not_retried(fast_gateway, stub_upstream):
    gw = gateway_with(fast_gateway, "slow", stub_upstream, upstream_timeout_s=0.5, upstream_retries=2)
    before = stub_upstream.state["hits"]["slow"]
    start = time.perf_counter()
    with _client(gw) as c:
        assert_openai_error(c.post("/v1/chat/completions", json=chat_body()), 504, "upstream_timeout")
    assert time.perf_counter() - start < 4.0
    assert stub_upstream.state["hits"]["slow"] - before == 1  # a read timeout is never retried


def test_upstream_unreachable_and_circuit_breaker(fast_gateway, stub_upstream):
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"
    gw = gateway_with(
        fast_gateway, base_url=dead, upstream_retries=1, upstream_breaker_failures=4, upstream_breaker_reset_s=60
    )
    with _client(gw) as c:
        for _ in range(2):  # 2 requests x (1 + 1 retry) = 4 failures: the circuit opens
            assert_openai_error(c.post("/v1/chat/completions", json=chat_body()), 502, "upstream_unavailable")
        start = time.perf_counter()
        r = c.post("/v1/chat/completions", json=chat_body(stream=True))
        assert_openai_error(r, 503, "upstream_circuit_open")
        assert time.perf_counter() - start < 0.5 and int(r.headers["retry-after"]) > 1


def test_circuit_breaker_half_open_recovery(fast_gateway, stub_upstream):
    gw = gateway_with(
        fast_gateway,
        "switch",
        stub_upstream,
        upstream_retries=0,
        upstream_breaker_failures=2,
        upstream_breaker_reset_s=3.0,
    )
    clock = ManualClock()
    gw.backend.breaker.clock = clock  # advanced below instead of sleeping through the reset
    state = stub_upstream.state
    state["down"] = True
    try:
        with _client(gw) as c:
            for _ in range(2):
                assert_openai_error(c.post("/v1/chat/completions", json=chat_body()), 502, "upstream_error")
            hits = state["hits"]["switch"]
            assert_openai_error(c.post("/v1/chat/completions", json=chat_body()), 503, "upstream_circuit_open")
            assert state["hits"]["switch"] == hits  # failed fast, upstream not called
            clock.advance(3.1)
            assert_openai_error(c.post("/v1/chat/completions", json=chat_body()), 502)  # trial fails: open again
            assert_openai_error(c.post("/v1/chat/completions", json=chat_body()), 503, "upstream_circuit_open")
            state["down"] = False
            clock.advance(3.1)
            assert c.post("/v1/chat/completions", json=chat_body()).status_code == 200  # trial succeeds: closed
            assert gw.backend.breaker.state == "closed"
    finally:
        state["down"] = False


def _events(resp: httpx.Response) -> list[str]:
    return [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]


def test_upstream_drops_mid_stream(fast_gateway, stub_upstream):
    from gateway.api.app import create_app
    from tests.conftest import ServerThread

    gw = gateway_with(fast_gateway, "drop", stub_upstream)
    with ServerThread(create_app(gw.settings, gateway=gw)) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        with c.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as resp:
            assert resp.status_code == 200
            events = _events(resp)
        assert events[-1] == "[DONE]"
        err = json.loads(events[-2])["error"]
        assert err["code"] == "upstream_stream_error" and err["type"] == "upstream_error"
        assert c.get("/healthz").status_code == 200  # the server lives on


def test_client_disconnect_cancels_upstream(fast_gateway, stub_upstream):
    from gateway.api.app import create_app
    from tests.conftest import ServerThread

    gw = gateway_with(fast_gateway, "endless", stub_upstream)
    app = create_app(gw.settings, gateway=gw)
    with ServerThread(app) as srv:
        closed = stub_upstream.state["closed"]
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            with c.stream("POST", "/v1/chat/completions", json=chat_body(stream=True, max_tokens=1000)) as resp:
                lines = resp.iter_lines()
                next(lines)
        deadline = time.time() + 10
        while time.time() < deadline and stub_upstream.state["closed"] == closed:
            time.sleep(0.05)
        assert stub_upstream.state["closed"] == closed + 1, "the upstream stream was orphaned"
        while time.time() < deadline and app.state.limiter.active:
            time.sleep(0.05)
        assert app.state.limiter.active == 0, "the generation slot leaked"


@pytest.mark.slow
def test_client_disconnect_cancels_local_generation(gateway, server):
    lock = gateway.backend._lock
    with httpx.Client(base_url=server.url, timeout=120) as c:
        with c.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": gateway.backend.model_ids[0],
                "messages": [{"role": "user", "content": "Write a long story."}],
                "max_tokens": 1000,
                "stream": True,
                "temperature": 1.0,
            },
        ) as resp:
            assert resp.status_code == 200
            lines = resp.iter_lines()
            next(lines)
            time.sleep(1.0)
            assert lock.locked()  # generating
    start = time.time()
    assert lock.acquire(timeout=15), "local generation kept running after the client left"
    lock.release()
    assert time.time() - start < 15


# --- guardrail faults --------------------------------------------------------------------------------------------
class FaultConfig(GuardrailConfig):
    """Config of the test-only faulty guardrail."""

    mode: str = "raise"


class FaultyGuardrail(Guardrail):
    """Raises, sleeps past its timeout, exits, or returns garbage, depending on ``mode``."""

    Config: ClassVar = FaultConfig

    def scan(self, text: str, direction: Direction) -> GuardrailResult:
        mode = self.config.mode
        if mode == "raise":
            raise RuntimeError("model file corrupt")
        if mode == "sleep":
            threading.Event().wait(1.0)
            return self.fired(0.0)
        if mode == "exit":
            raise SystemExit(3)
        if mode == "none":
            return None  # type: ignore[return-value]
        if mode == "nan":
            return self.fired(float("nan"))
        return self.fired(0.0)


def _pipeline(monkeypatch, entries_in, entries_out=()):
    import guardrails
    from gateway.policy.schema import LoadedPolicy, Policy
    from gateway.serving.pipeline import Pipeline

    monkeypatch.setitem(guardrails.REGISTRY, "faulty", "tests.integration.test_limits_faults:FaultyGuardrail")
    policy = Policy.model_construct(name="faults", input=list(entries_in), output=list(entries_out))
    return Pipeline(LoadedPolicy(policy=policy, version="test", path=None))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["raise", "sleep", "exit", "none", "nan"])
@pytest.mark.parametrize("on_error", ["block", "allow"])
def test_guardrail_fault_applies_on_error(monkeypatch, mode, on_error):
    cfg = FaultConfig(type="faulty", mode=mode, on_error=on_error, timeout_s=0.2)
    pipeline = _pipeline(monkeypatch, [cfg])
    verdict = asyncio.run(pipeline.check("hello", Direction.INPUT))
    result = verdict.results[0]
    assert verdict.decision is Decision(on_error)
    assert result.error and result.action == f"on_error:{on_error}"
    if mode == "sleep":
        assert result.error == "timed out"


def test_guardrails_after_a_timed_out_one_still_run_in_order(monkeypatch):
    """The chain runs in one worker thread; when its second guardrail overruns, that one gets on_error and the
    third still runs (in a thread of its own), with the results in policy order."""
    entries = [
        FaultConfig(type="faulty", name="first", mode="fine"),
        FaultConfig(type="faulty", name="hangs", mode="sleep", on_error="block", timeout_s=0.2),
        FaultConfig(type="faulty", name="third", mode="fine"),
    ]
    verdict = asyncio.run(_pipeline(monkeypatch, entries).check("hello", Direction.INPUT))
    assert [r.name for r in verdict.results] == ["first", "hangs", "third"]
    assert [r.error for r in verdict.results] == [None, "timed out", None]
    assert verdict.decision is Decision.BLOCK


def test_guardrail_fault_over_http(monkeypatch, fast_gateway):
    """The live pipeline's own guardrails fail: the input one raises (on_error allow), the output one hangs (block)."""
    from gateway.policy.schema import Policy  # noqa: F401 - the policy module must stay importable

    pipeline = getattr(getattr(fast_gateway, "store", None), "default", None) or fast_gateway.serving.pipeline
    # Replace the live entries (instances may be shared between directions and policies, so never patch them).
    inp, out = pipeline.guardrails[Direction.INPUT], pipeline.guardrails[Direction.OUTPUT]
    monkeypatch.setitem(
        pipeline.guardrails,
        Direction.INPUT,
        [FaultyGuardrail(FaultConfig(type="faulty", name="toxicity", mode="raise", on_error="allow"))] + inp[1:],
    )
    monkeypatch.setitem(
        pipeline.guardrails,
        Direction.OUTPUT,
        [FaultyGuardrail(FaultConfig(type="faulty", name="toxicity", mode="sleep", on_error="block", timeout_s=0.1))]
        + out[1:],
    )
    with _client(gateway_with(fast_gateway)) as c:
        r = c.post("/v1/chat/completions", json=chat_body())
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["choices"][0]["finish_reason"] == "content_filter"  # output guardrail failed: on_error block
        gl = body["greenlist"]
        assert gl["input"]["decision"] == "allow"
        assert gl["input"]["guardrails"][0]["error"].startswith("RuntimeError")
        assert gl["output"]["guardrails"][0]["error"] == "timed out"
        r = c.post("/v1/chat/completions", json=chat_body(stream=True))
        last = [json.loads(e) for e in r.text.split("data: ")[1:] if not e.startswith("[DONE]")][-1]
        assert last["choices"][0]["finish_reason"] == "content_filter"
        assert c.get("/healthz").status_code == 200
