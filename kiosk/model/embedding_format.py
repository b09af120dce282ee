"""The ``faceEmbeding`` string: a student's enrolment vectors as one short text the API stores.

Format, version 1 (``kfe1``), five fields separated by ``;``::

    kfe1;<method>;<dim>;<count>;<base64>

- ``method``: the embedder that made the vectors (``mobilefacenet-v1``, ``dlib-resnet-v1``); letters,
  digits, ``.``, ``_`` and ``-`` only. A vector of another method is never compared with ours.
- ``dim``: the length of one vector (192 for MobileFaceNet, 128 for dlib).
- ``count``: how many vectors follow, 1 to :data:`MAX_VECTORS` (one per enrolment photo).
- ``base64``: standard base64 (with padding) of ``count * dim`` little-endian IEEE float16 values,
  vector after vector. float16 keeps cosine similarity within about 1e-3 of float32 and halves the
  size: one 192-d vector is 512 base64 characters, three are 1,536 (a whole string ~1.56 kB).

Vectors are L2-normalised before encoding and again after decoding. An empty string means the
student has no embedding for that method ("not enrolled"). :func:`decode` checks everything and raises
:class:`~kiosk.errors.EmbeddingFormatError` with a plain reason; it never raises anything else, so a
malformed or foreign string marks one student "not enrolled" and never crashes the kiosk.

Example::

    text = encode(np.stack([v1, v2]), "mobilefacenet-v1")
    vectors = decode(text, method="mobilefacenet-v1", dim=192)     # (2, 192) float32, unit rows
"""

from __future__ import annotations

import base64
import binascii
import re

import numpy as np

from kiosk.config import METHOD_NAME
from kiosk.errors import EmbeddingFormatError, NotEnrolled

VERSION = "kfe1"
MAX_VECTORS = 20
MAX_DIM = 4096
_DTYPE = np.dtype("<f2")
_METHOD_RE = METHOD_NAME
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; raises when a row is not finite or is (nearly) zero."""
    if not np.all(np.isfinite(vectors)):
        raise EmbeddingFormatError("The embedding contains NaN or infinite values.")
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    if np.any(norms < 1e-6):
        raise EmbeddingFormatError("The embedding contains a zero vector.")
    return (vectors / norms).astype(np.float32)


def encode(vectors: np.ndarray, method: str) -> str:
    """One student's vectors, shape ``(k, dim)`` or ``(dim,)``, as a ``kfe1`` string.

    Raises :class:`EmbeddingFormatError` for a bad method name, no vectors, more than
    :data:`MAX_VECTORS`, NaN/inf or zero vectors.
    """
    if not _METHOD_RE.fullmatch(method or ""):
        raise EmbeddingFormatError(f"The embedding method name {method!r} is not allowed.")
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise EmbeddingFormatError("Expected one or more vectors of the same length.")
    if array.shape[0] > MAX_VECTORS:
        raise EmbeddingFormatError(f"At most {MAX_VECTORS} vectors per student can be stored.")
    if array.shape[1] > MAX_DIM:
        raise EmbeddingFormatError(f"Vectors longer than {MAX_DIM} values cannot be stored.")
    unit = _unit_rows(array)
    payload = base64.b64encode(unit.astype(_DTYPE).tobytes()).decode("ascii")
    return f"{VERSION};{method};{unit.shape[1]};{unit.shape[0]};{payload}"


def _parse_header(text: str, method: str, dim: int) -> tuple[int, str]:
    """Checks the four header fields; returns (vector count, base64 payload)."""
    fields = text.split(";")
    if not fields[0].startswith("kfe"):
        raise EmbeddingFormatError("The embedding is not in the kiosk's format.")
    if fields[0] != VERSION:
        raise EmbeddingFormatError(f"The embedding is format version {fields[0][:8]!r}; this kiosk reads {VERSION}.")
    if len(fields) != 5:
        raise EmbeddingFormatError("The embedding is malformed (expected 5 fields).")
    _, stored_method, dim_text, count_text, payload = fields
    if stored_method != method:
        raise EmbeddingFormatError(f"The embedding was made by another method, not {method}.")
    if not (dim_text.isascii() and dim_text.isdigit() and count_text.isascii() and count_text.isdigit()):
        raise EmbeddingFormatError("The embedding is malformed (dimension and count must be numbers).")
    if int(dim_text) != dim:
        raise EmbeddingFormatError(f"The embedding has dimension {int(dim_text)}, expected {dim}.")
    count = int(count_text)
    if count == 0:
        raise EmbeddingFormatError("The embedding holds no vectors.")
    if count > MAX_VECTORS:
        raise EmbeddingFormatError(f"The embedding holds {count} vectors; at most {MAX_VECTORS} are accepted.")
    return count, payload


def decode(text: str | None, *, method: str, dim: int) -> np.ndarray:
    """The vectors in ``text`` as a ``(k, dim)`` float32 array of unit rows.

    ``None`` or an empty string raises :class:`~kiosk.errors.NotEnrolled` (a subclass of
    :class:`EmbeddingFormatError`); anything malformed, foreign or unusable raises
    :class:`EmbeddingFormatError` with the reason.
    """
    if text is None or not str(text).strip():
        raise NotEnrolled("The student is not enrolled (no embedding for this method).")
    if not isinstance(text, str):
        raise EmbeddingFormatError("The embedding is not a string.")
    count, payload = _parse_header(text.strip(), method, dim)
    if not _B64_RE.fullmatch(payload) or len(payload) % 4:
        raise EmbeddingFormatError("The embedding is malformed (bad base64).")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EmbeddingFormatError("The embedding is malformed (bad base64).") from exc
    if len(raw) != count * dim * _DTYPE.itemsize:
        raise EmbeddingFormatError(f"The embedding's data does not hold {count} vectors of dimension {dim}.")
    vectors = np.frombuffer(raw, dtype=_DTYPE).astype(np.float32).reshape(count, dim)
    return _unit_rows(vectors)


def try_decode(text: str | None, *, method: str, dim: int) -> np.ndarray | None:
    """Like :func:`decode`, but ``None`` for a student who cannot be matched (empty or bad string)."""
    try:
        return decode(text, method=method, dim=dim)
    except EmbeddingFormatError:
        return None
