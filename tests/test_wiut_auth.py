"""TokenAuth without HTTP: expiry from the JWT, refresh before expiry, one refresh across threads."""

import threading
import time

import jwt
import pytest

from kiosk.errors import LoginRequired, MalformedResponse, UpstreamUnavailable
from kiosk.wiut.auth import TokenAuth, token_claims

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def token(exp: float, name: str = "teacher", **extra) -> str:
    claims = {"sub": "guid", "unique_name": name, "jti": f"j{exp}", "exp": int(exp), "iss": "MyApp",
              "aud": "MyAppUsers", **extra}
    return jwt.encode(claims, "a-key-the-kiosk-does-not-have-0123456789", algorithm="HS256")


class Refresher:
    """Counts calls; answers a token valid for 900 s from the clock; ``fail`` makes it raise."""

    def __init__(self, clock, rotate=False, fail=None, delay=0.0):
        self.clock, self.rotate, self.fail, self.delay = clock, rotate, fail, delay
        self.calls: list[tuple[str, str]] = []

    def __call__(self, access, refresh):
        self.calls.append((access, refresh))
        time.sleep(self.delay)
        if self.fail:
            raise self.fail
        return token(self.clock() + 900), (f"refresh-{len(self.calls)}" if self.rotate else None)


def make(lifetime=900.0, **kw):
    clock = Clock()
    refresher = Refresher(clock, **kw)
    auth = TokenAuth(refresher, clock=clock)
    auth.set_tokens(token(T0 + lifetime), "refresh-0")
    return auth, refresher, clock


def test_exp_is_read_without_the_signing_key():
    claims = token_claims(token(T0 + 60))
    assert claims["exp"] == int(T0 + 60) and claims["unique_name"] == "teacher"


@pytest.mark.parametrize("bad", ["not-a-jwt", "a.b.c", jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256")])
def test_a_token_that_is_not_a_jwt_with_exp_is_malformed(bad):
    with pytest.raises(MalformedResponse, match="Login"):
        token_claims(bad)


def test_expires_at_and_username():
    auth, _, _ = make()
    assert auth.expires_at == int(T0 + 900)
    assert auth.username == "teacher" and auth.logged_in


def test_no_refresh_while_the_token_is_fresh():
    auth, refresher, clock = make()
    clock.now += 800
    first = auth.current_token()
    assert auth.current_token() == first and refresher.calls == []


def test_refreshes_shortly_before_expiry_with_both_tokens():
    auth, refresher, clock = make()
    old = auth.current_token()
    clock.now += 900 - 29  # inside the 30 s margin
    assert auth.current_token() != old
    assert refresher.calls == [(old, "refresh-0")]


def test_margin_is_a_tenth_of_a_short_lifetime():
    auth, refresher, clock = make(lifetime=10)
    clock.now += 8.5
    auth.current_token()
    assert refresher.calls == []
    clock.now += 0.6
    auth.current_token()
    assert len(refresher.calls) == 1


def test_keeps_the_old_refresh_token_when_none_comes_back():
    auth, refresher, clock = make()
    for _ in range(2):
        clock.now += 1000
        auth.current_token()
    assert [r for _, r in refresher.calls] == ["refresh-0", "refresh-0"]


def test_login_expiry_is_the_refresh_tokens_and_survives_refreshes_without_a_new_one():
    clock = Clock()
    auth = TokenAuth(Refresher(clock), clock=clock)
    auth.set_tokens(token(T0 + 900), token(T0 + 30 * 86400, typ="refresh"))
    assert auth.login_expires_at == int(T0 + 30 * 86400)   # when the teacher must log in again
    clock.now += 1000
    auth.current_token()                                    # refreshed; no new refresh token came back
    assert auth.expires_at == int(T0 + 1900) and auth.login_expires_at == int(T0 + 30 * 86400)
    auth.forget()
    assert auth.login_expires_at is None


def test_a_refresh_token_without_a_readable_expiry_gives_no_login_expiry():
    auth, _, _ = make()                                     # "refresh-0" is opaque
    assert auth.login_expires_at is None and auth.logged_in


def test_uses_a_rotated_refresh_token():
    auth, refresher, clock = make(rotate=True)
    for _ in range(2):
        clock.now += 1000
        auth.current_token()
    assert [r for _, r in refresher.calls] == ["refresh-0", "refresh-1"]


def test_rejected_refresh_forgets_tokens_and_asks_to_log_in_again():
    auth, refresher, clock = make(fail=LoginRequired("The university login has expired: log in again."))
    clock.now += 1000
    with pytest.raises(LoginRequired, match="log in again"):
        auth.current_token()
    assert not auth.logged_in and auth.expires_at is None
    with pytest.raises(LoginRequired):
        auth.current_token()
    assert len(refresher.calls) == 1  # no retry loop


def test_unreachable_refresh_keeps_tokens_for_a_later_try():
    auth, _, clock = make(fail=UpstreamUnavailable("down", call="Refresh"))
    clock.now += 1000
    with pytest.raises(UpstreamUnavailable):
        auth.current_token()
    assert auth.logged_in


def test_not_logged_in_raises_login_required():
    auth = TokenAuth(Refresher(Clock()))
    with pytest.raises(LoginRequired):
        auth.current_token()


def test_ten_threads_on_an_expired_token_cause_one_refresh():
    auth, refresher, clock = make()
    refresher.delay = 0.05  # keep the refresh in flight while the others arrive
    clock.now += 1000
    start = threading.Barrier(10)
    results = []

    def worker():
        start.wait()
        results.append(auth.current_token())

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refresher.calls) == 1
    assert len(set(results)) == 1


def test_skew_moves_local_expiry():
    clock = Clock()
    auth = TokenAuth(Refresher(clock), clock=clock, skew=lambda: 3600.0)  # server clock 1 h ahead
    auth.set_tokens(token(T0 + 3600 + 900), "r")
    assert auth.expires_at == pytest.approx(T0 + 900)


def test_repr_shows_no_token():
    auth, _, _ = make()
    assert auth.current_token() not in repr(auth) and "refresh-0" not in repr(auth)
