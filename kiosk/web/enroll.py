"""Enrolment endpoints: photos uploaded from the phone (in memory only) or the kiosk's own camera."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from kiosk.web.auth import login_required, state
from kiosk.web.errors import error
from kiosk.web.inputs import json_body, user_id_of

bp = Blueprint("enroll", __name__, url_prefix="/api/enroll")

MAX_PHOTOS = 10
# Leading bytes of the image formats the engine decodes (JPEG, PNG, WebP, BMP).
MAGIC = ((b"\xff\xd8\xff", 0), (b"\x89PNG\r\n\x1a\n", 0), (b"WEBP", 8), (b"BM", 0))


def is_image(data: bytes) -> bool:
    """True when ``data`` starts like a JPEG, PNG, WebP or BMP file (the type the browser claims is ignored)."""
    return any(data[offset:offset + len(magic)] == magic for magic, offset in MAGIC)


@bp.post("")
@login_required
def enroll_photos():
    user_id = user_id_of({"userId": request.form.get("userId", "")})
    files = request.files.getlist("image")
    if not files:
        return error(400, "Send one or more photos in the field image.")
    if len(files) > MAX_PHOTOS:
        return error(400, f"Send at most {MAX_PHOTOS} photos at a time.")
    images = [f.read() for f in files]
    for number, data in enumerate(images, start=1):
        if not is_image(data):
            return error(415, f"Photo {number} is not a JPEG, PNG, WebP or BMP image.")
    stored = state().kiosk.enroll(user_id, images)
    return jsonify({"userId": user_id, "vectors": stored}), 201


@bp.post("/capture")
@login_required
def enroll_capture():
    user_id = user_id_of(json_body("userId"))
    stored = state().kiosk.enroll_capture(user_id)
    return jsonify({"userId": user_id, "vectors": stored}), 201
