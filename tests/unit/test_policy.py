"""Policy files: validation with file, line and field; the policy CLI; refusing to start on a bad policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.policy.schema import DEFAULT_POLICY_PATH, PolicyError, load_policy, parse_policy

BAD = """name: broken
watermark:
  delta: -1
input:
  - type: toxicity
    threshold: 3
  - type: no-such-guardrail
output:
  - type: toxicity
    acton: block
"""


def test_default_policy_is_valid():
    loaded = load_policy(DEFAULT_POLICY_PATH)
    assert loaded.policy.name == "default" and len(loaded.version) == 12
    assert [g.type for g in loaded.policy.input] == ["toxicity"]


def test_every_error_has_line_and_field():
    with pytest.raises(PolicyError) as info:
        parse_policy(BAD, "bad.yaml")
    found = {(i.line, i.field.split(".")[0]) for i in info.value.issues}
    lines = {i.field: i.line for i in info.value.issues}
    assert lines["watermark.delta"] == 3
    assert lines["input.0.toxicity.threshold"] == 6
    assert lines["input.1"] == 7
    assert lines["output.0.toxicity.acton"] == 10
    assert all(i.file == "bad.yaml" for i in info.value.issues) and len(found) == 4


def test_errors_in_the_input_mapping_name_its_keys_and_lines():
    text = (
        "name: m\n"
        "input:\n"
        "  roles: [user, robot]\n"
        "  mode: sometimes\n"
        "  guardrails:\n"
        "    - type: toxicity\n"
        "      threshold: 3\n"
    )
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "m.yaml")
    lines = {i.field: i.line for i in info.value.issues}
    assert lines == {"input.roles.1": 3, "input.mode": 4, "input.guardrails.0.toxicity.threshold": 7}
    assert "'pre_call' or 'during_call'" in next(i.message for i in info.value.issues if i.field == "input.mode")
    with pytest.raises(PolicyError, match="unknown keys"):
        parse_policy("name: m\ninput:\n  when: always\n  guardrails: []\n")


def test_yaml_syntax_error_and_non_mapping():
    with pytest.raises(PolicyError) as info:
        parse_policy("name: [unclosed\n", "s.yaml")
    assert info.value.issues[0].field == "<yaml>"
    with pytest.raises(PolicyError):
        parse_policy("- just a list\n")


def test_duplicate_guardrail_names_rejected():
    with pytest.raises(PolicyError, match="unique"):
        parse_policy("name: d\noutput:\n  - type: toxicity\n  - type: toxicity\n")


def test_policy_check_cli(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    runner = CliRunner()
    ok = runner.invoke(app, ["policy", "check", str(DEFAULT_POLICY_PATH)])
    assert ok.exit_code == 0 and "ok" in ok.output
    res = runner.invoke(app, ["policy", "check", str(DEFAULT_POLICY_PATH), str(bad)])
    assert res.exit_code == 1
    assert f"{bad}:6: input.0.toxicity.threshold" in res.output


def test_policy_schema_cli():
    res = CliRunner().invoke(app, ["policy", "schema"])
    schema = json.loads(res.output)
    assert "input" in schema["properties"] and schema["title"] == "Policy"


def test_serve_refuses_invalid_policy(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    res = CliRunner().invoke(app, ["serve", "--policy", str(bad), "--port", "1"])
    assert res.exit_code == 2
    assert "bad.yaml:3: watermark.delta" in res.output
