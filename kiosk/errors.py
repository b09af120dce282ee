"""The kiosk's exceptions: one root, :class:`KioskError`, and leaves that also inherit a built-in.

Catch :class:`KioskError` to handle anything the kiosk raises on purpose; catch the built-in
(``ConnectionError``, ``ValueError`` ...) where generic code already does. Every message is a plain
sentence that can be shown to a teacher or an administrator as it is. Messages never contain
passwords, tokens, student names or student IDs.
"""


class KioskError(Exception):
    """Base of every error the kiosk raises on purpose."""


# --- settings ---------------------------------------------------------------------------------
class ConfigError(KioskError, ValueError):
    """A setting is missing, unknown, of the wrong type or out of bounds."""


# --- the university API -----------------------------------------------------------------------
class UpstreamError(KioskError, IOError):
    """The university API failed; ``call`` names the API call (e.g. ``"StudentsByLesson"``)."""

    def __init__(self, message: str, *, call: str = "", status: int | None = None):
        super().__init__(message)
        self.call = call
        self.status = status


class UpstreamUnavailable(UpstreamError, ConnectionError):
    """The API could not be reached, timed out or kept answering 5xx/429 after the retry budget."""


class UpstreamRejected(UpstreamError, ValueError):
    """The API refused the request (a 4xx other than 401); retrying the same request will not help."""


class MalformedResponse(UpstreamError, ValueError):
    """The API answered 2xx but the body is not what the contract says (HTML, missing field, wrong type)."""


class AuthError(UpstreamError, PermissionError):
    """Base of the authentication failures."""


class LoginFailed(AuthError):
    """The university rejected the username or password."""


class LoginRequired(AuthError):
    """There are no usable tokens (none yet, or the refresh token was rejected): log in again."""


# --- models and recognition -------------------------------------------------------------------
class ModelLoadError(KioskError, RuntimeError):
    """A model file is missing, corrupt, or does not have the expected inputs/outputs."""


class EmbeddingFormatError(KioskError, ValueError):
    """A stored ``faceEmbeding`` string is malformed, of the wrong dimension, or of another method."""


class EnrollmentRefused(KioskError, ValueError):
    """A photo cannot be used for enrolment; the message says why (no face, two faces, blurred ...)."""


class FetchError(KioskError, IOError):
    """A model or data package could not be downloaded from its registry, or its archive is corrupt."""


class DatasetMissing(KioskError, FileNotFoundError):
    """Face data (ORL faces, group photos, videos) has not been fetched: run `kiosk models --with-data`."""


class NotEnrolled(EmbeddingFormatError):
    """The student has no stored embedding for this method (an empty ``faceEmbeding`` string)."""


class BaselineUnavailable(KioskError, ImportError):
    """The optional dlib baseline (``pip install '.[baseline]'``) is not installed."""


# --- hardware ---------------------------------------------------------------------------------
class CameraError(KioskError, IOError):
    """The camera could not be opened or stopped delivering frames."""


class FeedbackError(KioskError, RuntimeError):
    """The LED/buzzer could not be set up (wrong pin, no GPIO access)."""


# --- the running class ------------------------------------------------------------------------
class NoClassRunning(KioskError, LookupError):
    """An operation needs a running class and none is running."""


class NotOnRoster(KioskError, LookupError):
    """The student is not on the roster of the running class."""


class ClassInProgress(KioskError, RuntimeError):
    """Another teacher is running a class; logging in needs ``takeover=True``. ``teacher`` names them."""

    def __init__(self, message: str, *, teacher: str = ""):
        super().__init__(message)
        self.teacher = teacher


class ClassAlreadyRunning(KioskError, RuntimeError):
    """A class is already running on this kiosk: end it before starting another."""


class SpoolError(KioskError, OSError):
    """The spool of undelivered marks (``outbox-spool.json`` in the state folder) cannot be written or removed."""
