"""Bearer tokens for the university API: kept in memory, refreshed before expiry and once on a 401.

:class:`TokenAuth` is a ``requests`` auth plug-in. It holds the access and refresh tokens of the one
teacher logged in (never on disk, never in a message or repr) and asks a *refresher* callable, given by
:class:`~kiosk.wiut.client.WiutClient`, for a new access token when the current one is about to expire
or the API answered 401. One refresh runs at a time across threads: a thread that waited for the lock
and finds that the token it saw has already been replaced uses the new one instead of refreshing again.

Example::

    auth = TokenAuth(refresher=client_refresh, skew=client.clock_skew)
    auth.set_tokens(access, refresh)
    session.post(url, auth=auth, timeout=10)
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
import requests

from kiosk.errors import LoginRequired, MalformedResponse

# Refresh this long before expiry: 10% of the token's lifetime, at most this many seconds.
REFRESH_MARGIN_MAX_S = 30.0
REFRESH_MARGIN_FRACTION = 0.10
# The Date header has whole seconds: a smaller skew is noise, not a wrong clock.
SKEW_IGNORED_BELOW_S = 2.0

# refresher(access_token, refresh_token) -> (new_access_token, new_refresh_token or None)
Refresher = Callable[[str, str], tuple[str, str | None]]


def token_claims(token: str, call: str = "Login") -> dict[str, Any]:
    """The claims of a JWT, read without verifying the signature (the kiosk has no key).

    Raises MalformedResponse (naming ``call``) when ``token`` is not a JWT with a numeric ``exp``.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False,
                                            "verify_aud": False, "verify_iss": False, "verify_nbf": False,
                                            "verify_iat": False})
    except jwt.PyJWTError as exc:
        raise MalformedResponse(f"The university API answered {call} with a token that is not a JWT.",
                                call=call) from exc
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise MalformedResponse(f"The university API answered {call} with a token without an expiry.",
                                call=call)
    return claims


def _expiry_or_none(token: str) -> float | None:
    """The ``exp`` of a token that is a JWT (the university's refresh tokens are), else None: never raises."""
    try:
        return float(token_claims(token)["exp"])
    except MalformedResponse:
        return None


class TokenAuth(requests.auth.AuthBase):
    """Adds ``Authorization: Bearer`` to each request; refreshes shortly before expiry and once on 401.

    ``clock`` returns local epoch seconds. ``skew()`` (server clock minus local clock in seconds, None
    when unknown) turns the token's ``exp``, which is server time, into local time, so a Pi whose clock is off
    neither refreshes on every call nor never. Raises :class:`LoginRequired` when there are no tokens
    or the refresh token was rejected (the tokens are then forgotten; there is no retry loop).
    """

    def __init__(self, refresher: Refresher, *, clock: Callable[[], float] = time.time,
                 skew: Callable[[], float | None] = lambda: None):
        self._refresher = refresher
        self._clock = clock
        self._skew = skew
        self._lock = threading.RLock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._claims: dict[str, Any] = {}
        self._expires_at: float | None = None
        self._refresh_expires_at: float | None = None
        self._margin = 0.0

    def __repr__(self) -> str:
        return f"TokenAuth(logged_in={self.logged_in}, expires_at={self._expires_at})"

    # --- state -------------------------------------------------------------------------------
    @property
    def logged_in(self) -> bool:
        return self._access is not None

    @property
    def expires_at(self) -> float | None:
        """Local epoch seconds when the access token expires; None when not logged in."""
        return self._expires_at

    @property
    def login_expires_at(self) -> float | None:
        """Local epoch seconds when the refresh token expires, i.e. when the teacher must log in again;
        None when not logged in or when the refresh token carries no readable expiry."""
        return self._refresh_expires_at if self._access is not None else None

    @property
    def username(self) -> str | None:
        """``unique_name`` of the access token; None when not logged in."""
        name = self._claims.get("unique_name") if self._access else None
        return str(name) if name is not None else None

    def set_tokens(self, access: str, refresh: str | None, *, call: str = "Login") -> None:
        """Store new tokens; ``refresh`` None keeps the old refresh token. Raises MalformedResponse."""
        claims = token_claims(access, call)
        now = self._clock()
        server_skew = self._skew() or 0.0
        if abs(server_skew) < SKEW_IGNORED_BELOW_S:
            server_skew = 0.0
        with self._lock:
            self._access, self._claims = access, claims
            if refresh:
                self._refresh = refresh
                refresh_exp = _expiry_or_none(refresh)
                self._refresh_expires_at = None if refresh_exp is None else refresh_exp - server_skew
            self._expires_at = float(claims["exp"]) - server_skew
            lifetime = max(0.0, self._expires_at - now)
            self._margin = min(REFRESH_MARGIN_MAX_S, REFRESH_MARGIN_FRACTION * lifetime)

    def forget(self) -> None:
        """Drop both tokens (logout, or a rejected refresh)."""
        with self._lock:
            self._access = self._refresh = None
            self._claims, self._expires_at, self._refresh_expires_at, self._margin = {}, None, None, 0.0

    # --- refreshing --------------------------------------------------------------------------
    def current_token(self) -> str:
        """The access token to send now, refreshed first if it expires within the margin."""
        token, expires_at = self._access, self._expires_at
        if token is None:
            raise LoginRequired("Not logged in to the university API: log in again.")
        if expires_at is not None and self._clock() >= expires_at - self._margin:
            return self.refresh(seen=token)
        return token

    def refresh(self, seen: str) -> str:
        """Replace the access token ``seen`` (unless another thread already did) and return the new one."""
        with self._lock:
            if self._access is not None and self._access != seen:
                return self._access
            if self._access is None or not self._refresh:
                self.forget()
                raise LoginRequired("The university login has expired: log in again.")
            try:
                access, refresh = self._refresher(self._access, self._refresh)
            except LoginRequired:
                self.forget()
                raise
            self.set_tokens(access, refresh, call="Refresh")
            return access

    # --- requests plug-in --------------------------------------------------------------------
    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.current_token()
        request.headers["Authorization"] = f"Bearer {token}"
        request.register_hook("response", functools.partial(self._retry_on_401, token))
        return request

    def _retry_on_401(self, sent: str, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code != 401:
            return response
        response.content  # noqa: B018 - drain and release the connection before anything can raise
        response.close()
        token = self.refresh(seen=sent)
        retry = response.request.copy()
        retry.hooks = {"response": []}  # exactly one retry: no 401 hook on the repeated request
        retry.headers["Authorization"] = f"Bearer {token}"
        again = response.connection.send(retry, **kwargs)
        again.history.append(response)
        again.request = retry
        return again
