"""``greenlist scan`` on real models: 2,000 mixed rows give the same verdicts in-process, on a local Ray and over HTTP.

The watermarked rows are made without the language model: words drawn mostly from the green list of a ``robust``
key (one fixed list), decoded with the served tokenizer; the human rows are ``british_novels.jsonl``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gateway.scan import TaskSpec, scan
from tests.conftest import shared_path

N_HUMAN = N_MARKED = 1000
POLICY = """\
name: scan-test
description: one moderator guardrail on outputs
output:
  - type: toxicity
    threshold: 0.5
    action: block
"""


@pytest.fixture(scope="module")
def scan_home(tmp_path_factory):
    """A GREENLIST_HOME whose active key is ``robust``; the converted model and caches reused from ~/.greenlist."""
    from benchmarks.bench_scan import scan_home as prepare

    home = tmp_path_factory.mktemp("scan-home")
    before = os.environ.get("GREENLIST_HOME")
    os.environ["GREENLIST_HOME"] = str(home)
    yield prepare(home)
    if before is None:
        os.environ.pop("GREENLIST_HOME", None)
    else:
        os.environ["GREENLIST_HOME"] = before


@pytest.fixture(scope="module")
def dataset(scan_home, tmp_path_factory):
    """2,000 rows (JSONL): human text, and texts of 8 to 200 words drawn from the green list 0% / 30% / 90% of the time."""
    from benchmarks.bench_scan import mixed_rows

    shared_path("human_text", "british_novels.jsonl")  # skips without the shared data
    rows = mixed_rows(scan_home, N_HUMAN, N_MARKED)
    path = tmp_path_factory.mktemp("scan-data") / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, {r["id"]: r for r in rows}


@pytest.fixture(scope="module")
def in_process(dataset, tmp_path_factory):
    path, _ = dataset
    out = tmp_path_factory.mktemp("scan-out") / "local.parquet"
    result = CliRunner().invoke(
        _cli(),
        [
            "scan",
            str(path),
            "--task",
            "verify",
            "--id-column",
            "id",
            "-o",
            str(out),
            "--batch-size",
            "100",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2000 rows (2000 scanned now, 0 already done, 0 errors)" in result.output
    return {r["row_id"]: r for r in pq.read_table(out).to_pylist()}


def _cli():
    from gateway.cli import app

    return app


def test_verdicts_are_right_on_the_mix(in_process, dataset):
    _, rows = dataset
    verdicts: dict[str, dict[str, int]] = {}
    for row_id, row in in_process.items():
        kind = verdicts.setdefault(rows[row_id]["kind"], {})
        kind[row["verdict"]] = kind.get(row["verdict"], 0) + 1
    assert verdicts["human"] == {"not_watermarked": N_HUMAN}  # FPR 0
    for length in (120, 200):
        assert set(verdicts[f"green0.9-{length}"]) == {"watermarked"}
        assert set(verdicts[f"green0.0-{length}"]) == {"not_watermarked"}
    assert set(verdicts["green0.9-8"]) == {"too_short"}
    counts = {v: sum(k.get(v, 0) for k in verdicts.values()) for v in ("watermarked", "not_watermarked")}
    assert counts["watermarked"] > 300 and counts["not_watermarked"] > N_HUMAN + 200


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray not installed: pip install 'greenlist[scan]'")
def test_ray_gives_the_same_verdicts_row_for_row(in_process, dataset, tmp_path):
    path, _ = dataset
    summary = scan(
        path,
        tmp_path / "ray.parquet",
        TaskSpec("verify"),
        id_column="id",
        batch_size=100,
        ray=True,
        workers=2,
        progress=False,
    )
    assert (summary.rows_written, summary.errors) == (2 * N_HUMAN, 0)
    on_ray = {r["row_id"]: r for r in pq.read_table(tmp_path / "ray.parquet").to_pylist()}
    assert on_ray.keys() == in_process.keys()
    differing = [k for k in in_process if on_ray[k] != in_process[k]]
    assert differing == []  # every column, the endpoint's JSON body included


def test_http_endpoints_agree_on_a_sample(in_process, dataset, scan_home, tmp_path):
    """/v1/watermark/verify, /v1/moderations and /v1/guardrails/check answer as the scan rows do."""
    from fastapi.testclient import TestClient

    from gateway.api.app import create_app
    from gateway.settings import Settings
    from gateway.state import Gateway

    path, rows = dataset
    policy = tmp_path / "policies" / "scan-test.yaml"
    policy.parent.mkdir()
    policy.write_text(POLICY)
    settings = Settings(
        backend="openai",
        upstream_base_url="http://127.0.0.1:9/v1",
        upstream_model="stub",
        policy=policy,
        auth="off",
        audit_enabled=False,
    )
    gw = Gateway.start(settings)
    sample = random.Random(1).sample(sorted(in_process), 200)
    with TestClient(create_app(settings, gateway=gw)) as client:
        for row_id in sample:
            body = client.post("/v1/watermark/verify", json={"text": rows[row_id]["text"]}).json()
            assert body == json.loads(in_process[row_id]["result"]), row_id

        small = path.parent / "small.jsonl"
        texts = [rows[k]["text"] for k in sample[:40]] + [
            "You are a worthless idiot and I hate you.",
            "Have a lovely day, friend.",
        ]
        small.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        for task in ("moderate", "guardrails"):
            out = tmp_path / f"{task}.parquet"
            summary = scan(small, out, TaskSpec(task, policy), batch_size=16, progress=False)
            assert summary.errors == 0
            scanned = pq.read_table(out).to_pylist()
            for row in scanned:
                text = texts[int(row["row_id"])]
                mine = json.loads(row["result"])
                if task == "moderate":
                    http = client.post("/v1/moderations", json={"input": text}).json()["results"][0]
                    assert http["flagged"] == mine["flagged"] == row["flagged"]
                    assert http["categories"] == mine["categories"]
                    assert http["category_scores"] == mine["category_scores"]
                else:
                    http = client.post("/v1/guardrails/check", json={"text": text}).json()
                    assert http["decision"] == mine["decision"] == row["decision"]
                    assert [(g["name"], g["decision"], g["score"]) for g in http["guardrails"]] == [
                        (g["name"], g["decision"], g["score"]) for g in mine["guardrails"]
                    ]
            decisions = {r["decision" if task == "guardrails" else "flagged"] for r in scanned}
            assert len(decisions) == 2, decisions  # the toxic line is caught, the rest is not
    shutil.rmtree(tmp_path / "policies")
