"""Reassembling streamed tool calls: OpenAI streams each call's ``arguments`` in pieces keyed by ``index``."""

from __future__ import annotations

from typing import Any


class ToolCallAssembler:
    """Collects streamed ``delta.tool_calls`` pieces into whole tool calls (OpenAI's non-streamed shape)."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, Any]] = {}

    def add(self, pieces: list[dict[str, Any]]) -> None:
        """Merge one delta's ``tool_calls`` list: ids, types and names are set once, ``arguments`` concatenated."""
        for piece in pieces:
            index = int(piece.get("index", len(self.calls)))
            call = self.calls.setdefault(
                index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            )
            call["id"] = piece.get("id") or call["id"]
            call["type"] = piece.get("type") or call["type"]
            function = piece.get("function") or {}
            call["function"]["name"] += function.get("name") or ""
            call["function"]["arguments"] += function.get("arguments") or ""

    def result(self) -> list[dict[str, Any]] | None:
        """The whole calls in index order, or None when there were none."""
        return [self.calls[i] for i in sorted(self.calls)] or None
