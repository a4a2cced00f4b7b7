"""Stored Responses API responses (``store``), for ``GET /v1/responses/{id}`` and ``previous_response_id``.

One JSON file per response under ``$GREENLIST_HOME/responses/``: the response object as returned, and the
conversation it ended (chat messages, without ``instructions``, which OpenAI does not carry over).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from gateway.errors import APIError

_ID = re.compile(r"^resp_[0-9a-f]{32}$")


class ResponseStore:
    """Responses kept on disk.

    Args:
        folder: Where the files live (created on first save).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, response_id: str, param: str) -> Path:
        if not _ID.match(response_id):
            raise APIError(404, f"response {response_id!r} not found", param=param, code="response_not_found")
        return self.folder / f"{response_id}.json"

    def save(self, response: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        """Write ``response`` and the conversation it ended (atomically)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(response["id"], "id")
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"response": response, "messages": messages}, f)
        os.replace(tmp, path)

    def load(self, response_id: str, param: str = "id") -> dict[str, Any]:
        """The stored record ``{"response", "messages"}``.

        Raises:
            APIError: 404 ``response_not_found`` (``param`` names the field that held the id).
        """
        path = self._path(response_id, param)
        try:
            record: dict[str, Any] = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise APIError(404, f"response {response_id!r} not found", param=param, code="response_not_found") from None
        return record
