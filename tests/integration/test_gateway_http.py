"""End-to-end tests of the gateway over HTTP on the embedded SmolLM2 model."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import generate_released

MODEL = "smollm2-135m-instruct"
TOXIC = "You are a worthless stupid idiot and I hate you, shut up you pathetic moron."
BENIGN = "What is the capital of France?"


def chat(client, content, **kw):
    return client.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": content}], **kw}
    )


def assert_openai_error(resp, status, code=None):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if code:
        assert err["code"] == code
    return err


def test_healthz_and_models(client):
    assert client.get("/healthz").json()["status"] == "ok"
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == MODEL


def test_generated_text_verifies_as_watermarked(client):
    body = generate_released(client, min_tokens=150)
    text = body["choices"][0]["message"]["content"]
    assert body["greenlist"]["watermark"]["applied"] is True
    key_id = body["greenlist"]["watermark"]["key_id"]
    verdict = client.post("/v1/watermark/verify", json={"text": text}).json()
    assert verdict["key_id"] == key_id
    assert verdict["z_score"] >= 4.0, verdict
    assert verdict["watermarked"] is True and verdict["p_value"] < 1e-4
    assert verdict["scheme"]["seeding_scheme"] == "selfhash" and verdict["scheme"]["gamma"] == 0.25
    assert "secret" not in json.dumps(verdict)


def test_human_paragraphs_are_not_flagged(client):
    """Human prose gets the verdict ``not_watermarked`` and p-values that are valid under the null.

    The session's key is random, so this samples the false-positive rate afresh
    on every run: at the level α = 3.2e-5 per text, two or more of 1,000 human
    paragraphs flagged has probability below 1e-3; at α = 0.01 the share of
    p-values below α must not exceed α by more than sampling noise.
    """
    from tests.conftest import shared_path

    rows = [json.loads(line) for line in shared_path("human_text", "british_novels.jsonl").open()]
    paragraphs = [r["text"] for r in rows if r["unit"] == "paragraph"]
    assert len(paragraphs) == 1000
    verdicts = [client.post("/v1/watermark/verify", json={"text": text}).json() for text in paragraphs]
    flagged = [v for v in verdicts if v["watermarked"]]
    assert len(flagged) <= 1, flagged
    zs = [v["z_score"] for v in verdicts]
    assert abs(sum(zs) / len(zs)) < 0.3  # centred near 0 under the null hypothesis
    assert sum(v["p_value"] <= 0.01 for v in verdicts) <= 10 + 3 * math.sqrt(10)


def test_too_short_text_is_not_guessed(client):
    v = client.post("/v1/watermark/verify", json={"text": "Hello there."}).json()
    assert v["verdict"] == "too_short" and v["watermarked"] is None


def test_toxic_prompt_refused_with_openai_error(client):
    resp = chat(client, TOXIC, max_tokens=8)
    err = assert_openai_error(resp, 400, "content_filter")
    assert err["param"] == "messages"
    assert resp.headers["x-greenlist-decision"] == "block"
    gl = resp.json()["greenlist"]
    assert gl["decision"] == "block" and gl["input"]["guardrails"][0]["name"] == "toxicity"


def test_benign_prompt_answered(client):
    resp = chat(client, BENIGN, max_tokens=20, temperature=0)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["choices"][0]["message"]["content"].strip()
    assert resp.headers["x-greenlist-decision"] in ("allow", "flag")
    gl = body["greenlist"]
    assert gl["policy"]["name"] == "default" and len(gl["policy"]["version"]) == 12
    assert {g["name"] for g in gl["output"]["guardrails"]} == {"toxicity", "protected_content", "citations"}
    assert 0.0 <= gl["input"]["guardrails"][0]["score"] < 0.5


def test_text_completion_and_stop(client):
    resp = client.post(
        "/v1/completions",
        json={"model": MODEL, "prompt": "1, 2, 3, 4,", "max_tokens": 20, "temperature": 0, "stop": [" 7"]},
    )
    assert resp.status_code == 200, resp.text
    choice = resp.json()["choices"][0]
    assert " 7" not in choice["text"] and choice["finish_reason"] == "stop"


def test_stream_is_checked_and_ends_with_done(client):
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Describe a forest in spring."}],
            "max_tokens": 80,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as resp:
        assert resp.status_code == 200
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert [e for e in events if e["choices"] and e["choices"][0]["finish_reason"]][-1]["choices"][0]["finish_reason"]
    assert "greenlist" in events[-1] and all("greenlist" not in e for e in events[:-1])  # on the last chunk
    streaming = events[-1]["greenlist"]["streaming"]
    assert streaming["mode"] == "buffer" and streaming["checks"][-1]["kind"] == "full"
    assert any(c["kind"] == "window" for c in streaming["checks"])  # 80 tokens > one 24-chunk window
    assert streaming["released_chars"] == len(text)
    assert events[-1]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
        ({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, None),
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 5}, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ],
)
def test_bad_requests_get_openai_errors(client, body, param):
    err = assert_openai_error(client.post("/v1/chat/completions", json=body), 400)
    if param:
        assert err["param"].startswith(param)


def test_limits_and_unknown_model(client):
    assert_openai_error(chat(client, "hi", max_tokens=100000), 400, "max_tokens_limit")
    resp = client.post("/v1/chat/completions", json={"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]})
    assert_openai_error(resp, 404, "model_not_found")
    resp = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert_openai_error(resp, 400)
    assert_openai_error(client.get("/v1/nothing-here"), 404)


def test_guardrails_check_endpoint(client):
    toxic = client.post("/v1/guardrails/check", json={"text": TOXIC, "direction": "output"}).json()
    assert toxic["decision"] == "block" and toxic["guardrails"][0]["score"] >= 0.5
    benign = client.post("/v1/guardrails/check", json={"text": BENIGN, "direction": "input"})
    assert benign.json()["decision"] == "allow" and benign.headers["x-greenlist-decision"] == "allow"
    assert_openai_error(
        client.post("/v1/guardrails/check", json={"text": "x", "policy": "nope"}), 404, "policy_not_found"
    )
    assert_openai_error(client.post("/v1/guardrails/check", json={"text": "x", "direction": "sideways"}), 400)


def test_moderations_shape(client):
    body = client.post("/v1/moderations", json={"input": [TOXIC, BENIGN]}).json()
    toxic, benign = body["results"]
    assert toxic["flagged"] is True and benign["flagged"] is False
    assert set(toxic["categories"]) == set(toxic["category_scores"])
    assert toxic["category_scores"]["harassment"] > benign["category_scores"]["harassment"]
