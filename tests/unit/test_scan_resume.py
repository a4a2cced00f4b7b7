"""``greenlist scan`` engine without models: input formats, row ids, resumable output, the interrupt hook, timings."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway.scan import ScanInputError, TaskSpec, read_rows, scan
from gateway.scan.io import ScanOutput
from gateway.scan.tasks import schema
from greenlist.clock import ManualClock

TEXTS = [f"text number {i} " + "word " * (i % 7) for i in range(103)]


class Interrupted(Exception):
    """Raised by the on_batch hook to stop a scan after K batches."""


def write_inputs(tmp_path, texts=TEXTS):
    rows = [{"id": f"doc-{i}", "text": t, "other": i} for i, t in enumerate(texts)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with (tmp_path / "in.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "text", "other"])
        writer.writeheader()
        writer.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet", row_group_size=10)
    return rows


class CountingTask:
    """A verify-shaped row function that records every text it is asked to scan."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.builds = 0

    def factory(self, spec: TaskSpec):
        self.builds += 1

        def run(texts: list[str]) -> list[dict]:
            self.seen.update(texts)
            return [
                {
                    "verdict": "watermarked" if "word word" in t else "not_watermarked",
                    "watermarked": "word word" in t,
                    "z_score": float(len(t)),
                    "p_value": 0.5,
                    "num_tokens_scored": len(t.split()),
                    "num_green_tokens": 0,
                    "key_id": "k",
                    "result": json.dumps({"len": len(t)}),
                    "error": None,
                }
                for t in texts
            ]

        return run


def test_three_formats_give_the_same_rows_and_ids(tmp_path):
    write_inputs(tmp_path)
    by_position = [read_rows(tmp_path / f"in.{ext}") for ext in ("jsonl", "csv", "parquet")]
    assert all(r.ids == [str(i) for i in range(len(TEXTS))] and r.texts == TEXTS for r in by_position)
    by_id = read_rows(tmp_path / "in.parquet", id_column="id")
    assert by_id.ids == [f"doc-{i}" for i in range(len(TEXTS))] and by_id.texts == TEXTS


def test_bad_inputs_are_refused_with_the_row(tmp_path):
    write_inputs(tmp_path)
    with pytest.raises(ScanInputError, match="no column 'body'"):
        read_rows(tmp_path / "in.jsonl", text_column="body")
    with pytest.raises(ScanInputError, match="no column 'body'"):
        read_rows(tmp_path / "in.parquet", text_column="body")
    (tmp_path / "dup.jsonl").write_text('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n')
    with pytest.raises(ScanInputError, match="duplicate id '1'"):
        read_rows(tmp_path / "dup.jsonl", id_column="id")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n\n{"text": \n')
    with pytest.raises(ScanInputError, match="bad.jsonl:3"):
        read_rows(tmp_path / "bad.jsonl")
    with pytest.raises(ScanInputError, match="unknown input format"):
        read_rows(tmp_path / "in.txt")


@pytest.mark.parametrize("ext", ["jsonl", "csv", "parquet"])
def test_interrupted_scan_resumes_without_redoing_or_losing_rows(tmp_path, ext):
    write_inputs(tmp_path)
    task, out = CountingTask(), tmp_path / "out.parquet"
    spec = TaskSpec("verify")

    def stop_after_3(batches: int, rows: int) -> None:
        if batches == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        scan(
            tmp_path / f"in.{ext}",
            out,
            spec,
            batch_size=10,
            progress=False,
            on_batch=stop_after_3,
            factory=task.factory,
            id_column="id",
        )
    assert not out.exists()  # not merged yet: 3 parts of 10 rows
    parts = sorted((tmp_path / "out.parquet.parts").glob("part-*.parquet"))
    assert [pq.read_metadata(p).num_rows for p in parts] == [10, 10, 10]
    assert sum(task.seen.values()) == 30

    summary = scan(
        tmp_path / f"in.{ext}", out, spec, batch_size=10, progress=False, factory=task.factory, id_column="id"
    )
    assert (summary.rows_total, summary.rows_skipped, summary.rows_scanned) == (103, 30, 73)
    assert summary.batches == 8 and summary.rows_written == 103
    assert task.seen == Counter(TEXTS)  # each row scanned exactly once over both runs
    table = pq.read_table(out)
    assert sorted(table.column("row_id").to_pylist()) == sorted(f"doc-{i}" for i in range(103))
    assert table.schema.metadata[b"greenlist.scan.task"] == b"verify"
    assert not (tmp_path / "out.parquet.parts").exists()
    by_id = {r["row_id"]: r for r in table.to_pylist()}
    assert by_id["doc-2"]["watermarked"] and not by_id["doc-1"]["watermarked"]

    again = scan(tmp_path / f"in.{ext}", out, spec, batch_size=10, progress=False, factory=task.factory, id_column="id")
    assert (again.rows_scanned, again.rows_written, task.builds) == (0, 103, 3)
    assert task.seen == Counter(TEXTS)


def test_new_rows_appended_to_the_input_are_scanned_into_the_finished_file(tmp_path):
    write_inputs(tmp_path, TEXTS[:50])
    task, out = CountingTask(), tmp_path / "out.parquet"
    scan(tmp_path / "in.jsonl", out, TaskSpec("verify"), batch_size=16, progress=False, factory=task.factory)
    write_inputs(tmp_path, TEXTS)
    summary = scan(tmp_path / "in.jsonl", out, TaskSpec("verify"), batch_size=16, progress=False, factory=task.factory)
    assert (summary.rows_skipped, summary.rows_scanned, summary.rows_written) == (50, 53, 103)
    assert task.seen == Counter(TEXTS)
    assert pq.read_table(out).column("row_id").to_pylist() == [str(i) for i in range(103)]


def test_an_output_of_another_task_is_refused(tmp_path):
    write_inputs(tmp_path)
    task = CountingTask()
    scan(tmp_path / "in.jsonl", tmp_path / "out.parquet", TaskSpec("verify"), progress=False, factory=task.factory)
    with pytest.raises(ScanInputError, match="task 'verify'"):
        scan(
            tmp_path / "in.jsonl", tmp_path / "out.parquet", TaskSpec("moderate"), progress=False, factory=task.factory
        )


def test_merge_keeps_one_row_per_id_after_a_crash_between_rename_and_cleanup(tmp_path):
    output = ScanOutput(tmp_path / "out.parquet", "moderate", schema("moderate"))
    rows = [{"row_id": str(i), "flagged": i % 2 == 0, "result": "{}", "error": None} for i in range(5)]
    output.write(rows[:3])
    output.write(rows[3:])
    assert output.finish() == 5
    output.write(rows[3:])  # as if the parts had survived the merge
    assert output.done_ids() == {str(i) for i in range(5)}
    assert output.finish() == 5
    assert pq.read_table(tmp_path / "out.parquet").column("row_id").to_pylist() == ["0", "1", "2", "3", "4"]


def test_a_row_that_raises_is_recorded_and_the_others_scanned():
    from gateway.scan.tasks import _each, _verify_flat

    def answer(text: str) -> dict:
        if text == "bad":
            raise ValueError("cannot tokenize")
        return {
            "verdict": "too_short",
            "watermarked": None,
            "z_score": 0.0,
            "p_value": 1.0,
            "num_tokens_scored": 1,
            "num_green_tokens": 0,
            "key_id": "k",
        }

    rows = _each("verify", ["ok", "bad", "fine"], answer, _verify_flat)
    assert [r["error"] for r in rows] == [None, "ValueError: cannot tokenize", None]
    assert rows[1]["verdict"] is None and rows[1]["result"] is None
    assert rows[2]["verdict"] == "too_short" and json.loads(rows[2]["result"])["key_id"] == "k"


def test_timings_come_from_the_injected_clock(tmp_path):
    write_inputs(tmp_path)
    clock = ManualClock()
    counting = CountingTask()

    def factory(spec: TaskSpec):
        run = counting.factory(spec)

        def timed(texts):
            clock.advance(2.0)  # every batch "takes" 2 s
            return run(texts)

        return timed

    summary = scan(
        tmp_path / "in.jsonl",
        tmp_path / "out.parquet",
        TaskSpec("verify"),
        batch_size=10,
        progress=False,
        factory=factory,
        clock=clock,
    )
    assert summary.first_batch_s == 2.0 and summary.seconds == 22.0  # 11 batches on the manual clock
    assert summary.steady_rows_per_s == pytest.approx((103 - 103 / 11) / 20.0)
