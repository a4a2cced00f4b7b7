"""Fuzzing: schemathesis over the gateway's own OpenAPI schema, Hypothesis on the detector and the policy loader.

Every generated request must get a non-5xx answer, and every 4xx must be
OpenAI-shaped. ``GREENLIST_FUZZ_EXAMPLES`` sets examples per operation (CI
default 60; ``docs/reliability.md`` reports a larger run).
"""

from __future__ import annotations

import math
import os
from collections import Counter

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.api.app import create_app
from gateway.policy.schema import PolicyError, parse_policy
from gateway.settings import Settings

EXAMPLES = int(os.environ.get("GREENLIST_FUZZ_EXAMPLES", "60"))
STATS: Counter = Counter()

FUZZ_SETTINGS = dict(
    auth="off",
    api_keys_file="/nonexistent/greenlist-fuzz-keys.json",
    max_request_bytes=65536,
    max_text_chars=5000,
    max_prompt_tokens=512,
    max_new_tokens_limit=32,
    max_new_tokens_default=16,
)
# The schema comes from an app built without a gateway; the requests go to a served app with one.
schema = schemathesis.openapi.from_dict(create_app(Settings(**FUZZ_SETTINGS)).openapi())
SERVER: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _served_gateway(fast_gateway):
    from tests.conftest import ServerThread
    from tests.reliability_fixtures import gateway_with

    gw = gateway_with(fast_gateway, **FUZZ_SETTINGS)
    with ServerThread(create_app(gw.settings, gateway=gw)) as srv:
        SERVER["url"] = srv.url
        yield
    print(f"\nschemathesis cases by status: {dict(sorted(STATS.items()))}, total {sum(STATS.values())}")


def check_openai_shape(response, path: str = "") -> None:
    """No 5xx; every 4xx body is ``{"error": {"message", "type", "param", "code"}}`` (Anthropic's
    ``{"type": "error", "error": {"type", "message"}}`` on ``/v1/messages``)."""
    status = response.status_code
    STATS[status] += 1
    assert status < 500, f"{status}: {response.text[:500]}"
    if status >= 400:
        body = response.json()
        err = body.get("error")
        anthropic = path.startswith("/v1/messages")
        fields = {"message", "type"} if anthropic else {"message", "type", "param", "code"}
        assert isinstance(err, dict) and fields <= set(err), body
        assert body.get("type") == "error" if anthropic else True, body
        assert isinstance(err["message"], str) and err["message"]


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_fuzz(case):
    if case.path.startswith(("/v1/admin", "/admin", "/console")) and case.method != "GET":
        pytest.skip("state-changing admin routes are fuzzed by their owners")
    response = case.call(base_url=SERVER["url"], timeout=60)
    check_openai_shape(response, case.path)


# --- Hypothesis: the watermark detector never crashes on arbitrary Unicode; z is finite ----------------------------
@given(st.text(alphabet=st.characters(codec=None), max_size=400))
@settings(max_examples=int(EXAMPLES * 5), deadline=None, suppress_health_check=list(HealthCheck))
def test_verify_arbitrary_unicode(fast_gateway, text):
    result = fast_gateway.verifier.verify(text)
    assert math.isfinite(result["z_score"]) and 0.0 <= result["p_value"] <= 1.0
    assert result["verdict"] in ("watermarked", "not_watermarked", "too_short")


# --- Hypothesis: the policy loader raises only PolicyError on arbitrary YAML ---------------------------------------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
_keys = st.sampled_from(
    [
        "name",
        "input",
        "output",
        "type",
        "threshold",
        "action",
        "on_error",
        "timeout_s",
        "watermark",
        "delta",
        "enabled",
        "streaming",
        "mode",
        "window_tokens",
        "extends",
        "shadow",
        "audit",
        "refusal_message",
        "toxicity",
        "categories",
        "x",
    ]
) | st.text(max_size=8)
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5), max_leaves=25
)
_entry = st.fixed_dictionaries(
    {"type": st.sampled_from(["toxicity", "protected_content", "citations", "nope"])},
    optional={"threshold": _scalars, "action": _scalars, "on_error": _scalars, "timeout_s": _scalars, "name": _scalars},
)
_policy = st.fixed_dictionaries(
    {},
    optional={
        "name": _scalars,
        "input": st.lists(_entry, max_size=3) | _values,
        "output": st.lists(_entry, max_size=3) | _values,
        "watermark": _values,
        "streaming": _values,
        "audit": _values,
    },
)


@given(
    st.one_of(
        _policy.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
        st.text(max_size=300),
        _values.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    )
)
@settings(max_examples=int(EXAMPLES * 10), deadline=None, suppress_health_check=list(HealthCheck))
def test_policy_loader_raises_only_policy_error(text):
    try:
        parse_policy(text, "<fuzz>")
    except PolicyError as exc:
        assert exc.issues and all(str(i) for i in exc.issues)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 5000 + "]" * 5000,  # deep nesting
        "a: &x [*x]",  # recursive alias
        "name: !!python/object:os.system x",  # unsafe tag
        "--- \nname: a\n---\nname: b\n",  # two documents
        "name: a\ninput:\n  - {type: toxicity, threshold: .nan}\n",
        "\x00\ud800",  # NUL and a lone surrogate
        "name: a\ninput: " + "{a: " * 3000 + "}" * 3000,
    ],
    ids=[
        "deep-nesting",
        "recursive-alias",
        "unsafe-tag",
        "two-documents",
        "nan-threshold",
        "nul-surrogate",
        "deep-mapping",
    ],
)
def test_policy_loader_hostile_documents(text):
    """Regression cases: each once crashed or could crash the loader with something other than PolicyError."""
    try:
        parse_policy(text, "<fuzz>")
    except PolicyError:
        pass


def test_lone_surrogates_over_http(fast_gateway):
    """Regression (found by fuzzing): a JSON ``\\ud800`` escape reached the tokenizers, which raised (HTTP 500)."""
    import httpx

    raw = {
        "/v1/watermark/verify": b'{"text": "caf\\ud800 and more words \\ud83d\\ude00"}',
        "/v1/moderations": b'{"input": ["you \\udfff idiot"]}',
        "/v1/guardrails/check": b'{"text": "\\ud800"}',
        "/v1/chat/completions": b'{"model": "stub-model", "max_tokens": 8, '
        b'"messages": [{"role": "user", "content": "hi \\udc00"}]}',
    }
    for path, body in raw.items():
        r = httpx.post(SERVER["url"] + path, content=body, headers={"content-type": "application/json"}, timeout=60)
        check_openai_shape(r)
        assert r.status_code == 200, (path, r.text)
    for text in ["\u200b", "\u202e\u200d", "\ud800"]:  # nothing left after normalisation
        result = fast_gateway.verifier.verify(text)
        assert result["verdict"] == "too_short" and math.isfinite(result["z_score"])
