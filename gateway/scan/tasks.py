"""What ``greenlist scan`` computes per row: the same answer as the HTTP endpoint for that text.

=============  ===============================  ==============================================================
task           endpoint                         computed by
=============  ===============================  ==============================================================
``verify``     ``POST /v1/watermark/verify``    :func:`gateway.state.build_verifier` (the server's construction)
``moderate``   ``POST /v1/moderations``         the policy's moderator guardrail, else the registry's default
``guardrails`` ``POST /v1/guardrails/check``    :meth:`gateway.serving.pipeline.Pipeline.check` of the policy
=============  ===============================  ==============================================================

A task is described by a picklable :class:`TaskSpec` and built where it runs (:func:`build_task`): in this process,
or once per Ray worker, so each worker loads one copy of the models. Each result row holds the row id, a few flat
verdict columns, ``result`` (the endpoint's JSON body for the text, without per-request fields) and ``error``
(a row that raised: its verdict columns are null).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.scan.io import ROW_ID

TASKS = ("verify", "moderate", "guardrails")

# flat columns of each task besides row_id / result / error: (name, arrow type name)
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "verify": (
        ("verdict", "string"),
        ("watermarked", "bool_"),
        ("z_score", "float64"),
        ("p_value", "float64"),
        ("num_tokens_scored", "int64"),
        ("num_green_tokens", "int64"),
        ("key_id", "string"),
    ),
    "moderate": (("flagged", "bool_"),),
    "guardrails": (("decision", "string"),),
}


@dataclass(frozen=True)
class TaskSpec:
    """A scan task, picklable (sent to Ray workers, built there).

    Attributes:
        task: ``verify``, ``moderate`` or ``guardrails``.
        policy: The policy file (moderator, guardrails, δ reported by verify); None: the settings' policy.
        direction: ``input`` or ``output`` (guardrails only; the endpoint's default is ``output``).
        settings: Overrides of :class:`gateway.settings.Settings` (the rest read from ``GREENLIST_*`` where the
            task is built).
    """

    task: str
    policy: Path | None = None
    direction: str = "output"
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; use one of {', '.join(TASKS)}")
        if self.direction not in ("input", "output"):
            raise ValueError(f"direction must be input or output, not {self.direction!r}")


def schema(task: str) -> Any:
    """The ``pyarrow`` schema of ``task``'s result rows: ``row_id``, the flat columns, ``result``, ``error``."""
    import pyarrow as pa

    flat = [pa.field(name, getattr(pa, kind)()) for name, kind in COLUMNS[task]]
    return pa.schema(
        [pa.field(ROW_ID, pa.string()), *flat, pa.field("result", pa.string()), pa.field("error", pa.string())]
    )


RowTask = Callable[[list[str]], list[dict[str, Any]]]
"""Texts -> one result row per text (without ``row_id``): the flat columns, ``result`` and ``error``."""


def _row(
    task: str, body: dict[str, Any] | None, error: str | None, flat: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    names = [name for name, _ in COLUMNS[task]]
    values = flat(body) if body is not None else dict.fromkeys(names)
    return {**values, "result": None if body is None else json.dumps(body, sort_keys=True), "error": error}


def _each(
    task: str,
    texts: list[str],
    answer: Callable[[str], dict[str, Any]],
    flat: Callable[[dict[str, Any]], dict[str, Any]],
) -> list[dict[str, Any]]:
    rows = []
    for text in texts:
        try:
            rows.append(_row(task, answer(text), None, flat))
        except Exception as exc:  # noqa: BLE001 - one bad row is recorded, the scan goes on
            rows.append(_row(task, None, f"{type(exc).__name__}: {exc}", flat))
    return rows


def _verify_flat(body: dict[str, Any]) -> dict[str, Any]:
    return {name: body[name] for name, _ in COLUMNS["verify"]}


def _settings(spec: TaskSpec) -> Any:
    from gateway.settings import Settings

    overrides = dict(spec.settings)
    if spec.policy is not None:
        overrides["policy"] = spec.policy
    return Settings(**overrides)


def _pipeline(settings: Any) -> Any:
    from gateway.policy.schema import load_policy
    from gateway.serving.pipeline import Pipeline

    return Pipeline(load_policy(settings.policy))


def build_task(spec: TaskSpec) -> RowTask:
    """Load what ``spec`` needs (keys and tokenizer, or the policy's guardrails) and return its row function.

    Raises:
        gateway.policy.schema.PolicyError: for an invalid policy file.
        Exception: whatever loading a model or the keys raises.
    """
    settings = _settings(spec)
    if spec.task == "verify":
        from gateway.policy.schema import load_policy
        from gateway.state import build_verifier

        verifier = build_verifier(settings, load_policy(settings.policy).policy.watermark.delta)
        return lambda texts: _each("verify", texts, verifier.verify, _verify_flat)
    pipeline = _pipeline(settings)
    if spec.task == "moderate":
        from guardrails import default_moderator

        moderator = pipeline.moderator() or default_moderator()

        # one text per call, as /v1/moderations scores a single input: a batch pads its texts together, which
        # moved scores by up to 5e-5 in tests and could flip a verdict at the threshold
        return lambda texts: _each("moderate", texts, lambda t: moderator.moderate([t])[0], _moderate_flat)
    from guardrails import Direction

    direction = Direction(spec.direction)
    loop = asyncio.new_event_loop()  # one loop for the task's life: rows are checked one after another

    async def check(text: str) -> dict[str, Any]:
        verdict = await pipeline.check(text, direction)
        return {
            "policy": {"name": pipeline.name, "version": pipeline.version},
            "direction": direction.value,
            "text": verdict.text,
            **verdict.to_dict(),
        }

    return lambda texts: _each("guardrails", texts, lambda t: loop.run_until_complete(check(t)), _guardrails_flat)


def _moderate_flat(body: dict[str, Any]) -> dict[str, Any]:
    return {"flagged": bool(body["flagged"])}


def _guardrails_flat(body: dict[str, Any]) -> dict[str, Any]:
    return {"decision": body["decision"]}
