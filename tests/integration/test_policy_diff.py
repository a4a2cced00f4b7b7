"""``greenlist policy diff``: flips, negative flip rate against labels, the CI gate, audit replay, the docs example."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from gateway.policy.diff import diff_policies, read_replay
from gateway.policy.schema import load_policy
from gateway.serving.pipeline import Pipeline
from tests.trust_fixtures import policy_yaml

ROOT = Path(__file__).resolve().parents[2]

TEXTS = [
    ("Have a lovely day.", "allow"),
    ("Thanks for the help!", "allow"),
    ("The weather is mild.", "allow"),
    ("You are a worthless idiot.", "block"),
    ("Shut up, you moron.", "block"),
]


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    old = tmp_path / "old.yaml"
    new = tmp_path / "new.yaml"
    old.write_text(policy_yaml("old", 1.0))  # never blocks
    new.write_text(policy_yaml("new", 0.0))  # always blocks
    data = tmp_path / "labelled.jsonl"
    data.write_text("".join(json.dumps({"text": t, "expected": e}) + "\n" for t, e in TEXTS))
    return old, new, data


def test_flips_and_negative_flip_rate(setup):
    old, new, data = setup
    items = read_replay(str(data))
    assert [i.label for i in items] == [False, False, False, True, True]
    report = diff_policies(Pipeline(load_policy(old)), Pipeline(load_policy(new)), items, source=str(data))
    assert report.n == 5 and report.allow_to_block == 5 and report.block_to_allow == 0
    assert report.old_accuracy == pytest.approx(0.6) and report.new_accuracy == pytest.approx(0.4)
    # old was right on the 3 benign texts and new gets them wrong: NFR 3/5; new fixes the 2 toxic ones
    assert report.negative_flips == 3 and report.negative_flip_rate == pytest.approx(0.6)
    assert report.positive_flips == 2 and report.positive_flip_rate == pytest.approx(0.4)
    reverse = diff_policies(Pipeline(load_policy(new)), Pipeline(load_policy(old)), items)
    assert reverse.block_to_allow == 5 and reverse.negative_flips == 2


def test_cli_gate_and_report(setup, tmp_path: Path):
    old, new, data = setup
    out = tmp_path / "report.md"
    res = CliRunner().invoke(
        cli,
        [
            "policy",
            "diff",
            str(old),
            str(new),
            "--replay",
            str(data),
            "--max-negative-flip-rate",
            "0.1",
            "--report",
            str(out),
        ],
    )
    assert res.exit_code == 1, res.output
    text = out.read_text()
    assert "| allow → block | 5 |" in text and "**negative flip rate** | **60.00%**" in text and "FAIL" in text
    res = CliRunner().invoke(
        cli, ["policy", "diff", str(old), str(new), "--replay", str(data), "--max-negative-flip-rate", "0.7", "--json"]
    )
    assert res.exit_code == 0 and json.loads(res.stdout)["negative_flip_rate"] == pytest.approx(0.6)
    # CSV with Davidson-style numeric classes
    csv = tmp_path / "d.csv"
    csv.write_text("tweet,class\n" + "".join(f'"{t}",{0 if e == "block" else 2}\n' for t, e in TEXTS))
    res = CliRunner().invoke(
        cli, ["policy", "diff", str(old), str(new), "--replay", str(csv), "--block-values", "0,1", "--json"]
    )
    assert res.exit_code == 0 and json.loads(res.stdout)["negative_flips"] == 3
    bad = CliRunner().invoke(cli, ["policy", "diff", str(old), str(new), "--replay", str(tmp_path / "missing.csv")])
    assert bad.exit_code == 2


def test_replay_from_the_audit_log(setup, tmp_path: Path):
    from gateway.observability.audit import AuditLog, make_record

    old, new, _ = setup
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    log = AuditLog(url)
    for i, (text, _) in enumerate(TEXTS):
        log.record(
            make_record(
                request_id=f"r{i}",
                tenant=None,
                endpoint="/v1/chat/completions",
                direction="output",
                policy="old",
                policy_version="v",
                decision="allow",
                guardrails=[],
                latency_ms=1.0,
                text=text,
                store_text=i < 4,
                ts=time.time(),
            )
        )
    log.close()
    items = read_replay(f"audit:{url}")
    assert len(items) == 4 and all(i.label is None and i.direction.value == "output" for i in items)
    res = CliRunner().invoke(cli, ["policy", "diff", str(old), str(new), "--replay", f"audit:{url}", "--json"])
    body = json.loads(res.stdout)
    assert res.exit_code == 0 and body["allow_to_block"] == 4 and body["negative_flip_rate"] is None


def test_example_report_is_checked_in():
    report = ROOT / "docs" / "policy-diff-example.md"
    text = report.read_text()
    assert "negative flip rate" in text.lower() and "olid_train.csv" in text
    for name in ("toxicity-0.5.yaml", "toxicity-0.3.yaml"):
        assert load_policy(ROOT / "docs" / "examples" / "policy-diff" / name).policy.input
