"""Reading request bodies: a JSON object with required fields, a student ID; 400 with a plain sentence."""

from __future__ import annotations

from typing import Any

from flask import abort, request

from kiosk.web.errors import error


def json_body(*required: str) -> dict[str, Any]:
    """The JSON object body; aborts with 400 naming the first missing field."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(error(400, "Send a JSON object with Content-Type: application/json."))
    for name in required:
        if data.get(name) in (None, ""):
            abort(error(400, f"The field {name} is required."))
    return data


def user_id_of(data: dict[str, Any]) -> str:
    """The ``userId`` field as text (IDs like "00019880"); aborts with 400 when it is not one."""
    value = data.get("userId")
    if not isinstance(value, str | int) or isinstance(value, bool) or not 0 < len(str(value)) <= 32:
        abort(error(400, "The field userId must be a student ID."))
    return str(value)
