"""WiutClient against the sandbox over real HTTP on loopback: calls, tokens, retries, errors."""

import socket
import threading
import time

import pytest

from kiosk.errors import LoginFailed, LoginRequired, MalformedResponse, UpstreamRejected, UpstreamUnavailable
from kiosk.wiut.client import WiutClient, problem_summary
from kiosk.wiut.models import AttClass, Lessons, Module, RosterStudent
from kiosk.wiut.sandbox import SandboxServer
from kiosk.wiut.sandbox_data import SandboxState
from tests.fixtures.sandbox import CLIENT_BACKOFF_S, DEMO_CLASS_ID, DEMO_LOGIN, DEMO_MODULE_ID

METHOD = "mobilefacenet-v1"


class Clock:
    """A settable clock that starts at the real time."""

    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocks():
    """(sandbox clock, client clock), a sandbox using the first and a logged-in client using the second."""
    server_clock, client_clock = Clock(), Clock()
    with SandboxServer(SandboxState(clock=server_clock, access_ttl=600)) as server, \
            WiutClient(server.url, timeout=2, backoff=CLIENT_BACKOFF_S, clock=client_clock) as api:
        api.login(*DEMO_LOGIN)
        yield server, api, server_clock, client_clock


def demo_slot(api):
    lessons = api.lessons(DEMO_MODULE_ID, 1)
    return lessons.slots[0].guid


# --- login ------------------------------------------------------------------------------------
def test_login_returns_the_username_and_sets_expiry(client, sandbox):
    assert client.login(*DEMO_LOGIN) == "teacher"
    assert client.logged_in and client.username == "teacher"
    assert client.access_expires_at == pytest.approx(time.time() + 900, abs=5)
    assert client.login_expires_at == pytest.approx(time.time() + 30 * 86400, abs=5)  # the refresh token's exp


def test_wrong_password_is_login_failed_and_not_retried(client, sandbox):
    with pytest.raises(LoginFailed, match="rejected the username or password") as caught:
        client.login("teacher", "wrong-placeholder")
    assert caught.value.call == "Login" and caught.value.status == 401
    assert "wrong-placeholder" not in str(caught.value)
    assert sandbox.state.count("Login") == 1
    assert not client.logged_in


def test_calls_before_login_ask_to_log_in_without_sending(client, sandbox):
    with pytest.raises(LoginRequired):
        client.my_modules()
    assert sandbox.state.count("MyModulesStaff") == 0


def test_logout_forgets_tokens(logged_in_client):
    logged_in_client.logout()
    assert not logged_in_client.logged_in and logged_in_client.username is None
    with pytest.raises(LoginRequired):
        logged_in_client.my_modules()


# --- every call and its typed result ----------------------------------------------------------
def test_my_modules(logged_in_client):
    modules = logged_in_client.my_modules()
    assert Module(785, "Contract Law", "4LLAW020C-n") in modules
    assert all(m.id != 903 for m in modules)  # another teacher's module


def test_lessons(logged_in_client):
    lessons = logged_in_client.lessons(DEMO_MODULE_ID, 1)
    assert isinstance(lessons, Lessons)
    assert AttClass(DEMO_CLASS_ID, "TW1", "Seminar 1") in lessons.att_classes
    assert lessons.slots[0].start is not None and lessons.slots[0].user == "teacher"


def test_students_matches_the_owners_example_roster(logged_in_client):
    roster = logged_in_client.students(demo_slot(logged_in_client), DEMO_CLASS_ID, METHOD)
    assert len(roster) == 24 and all(isinstance(s, RosterStudent) for s in roster)
    assert sum(s.is_attended and s.confidence == 0 for s in roster) == 20
    assert [s.confidence for s in roster if s.is_attended and s.confidence] == [56]
    assert all(len(s.user_id) == 8 and s.user_id.isdigit() for s in roster)


def test_set_attendance_changes_the_roster(logged_in_client, sandbox):
    guid = demo_slot(logged_in_client)
    user = logged_in_client.students(guid, DEMO_CLASS_ID, METHOD)[23].user_id
    logged_in_client.set_attendance(DEMO_CLASS_ID, user, 77)
    assert sandbox.state.attendance(DEMO_CLASS_ID)[user].confidence == 77
    logged_in_client.set_attendance(DEMO_CLASS_ID, user, -1)
    after = {s.user_id: s for s in logged_in_client.students(guid, DEMO_CLASS_ID, METHOD)}[user]
    assert (after.is_attended, after.confidence) == (False, -1)


@pytest.mark.parametrize("confidence", [50, 0, 101, 104, -2, True, 56.0])
def test_set_attendance_refuses_invalid_confidence_before_sending(logged_in_client, sandbox, confidence):
    with pytest.raises(ValueError):
        logged_in_client.set_attendance(DEMO_CLASS_ID, "00019880", confidence)
    assert sandbox.state.count("SetAttendanceStudent") == 0


def test_set_embedding_is_read_back_for_its_method_only(logged_in_client, sandbox):
    guid = demo_slot(logged_in_client)
    user = logged_in_client.students(guid, DEMO_CLASS_ID, METHOD)[0].user_id
    logged_in_client.set_embedding(user, "v1;AAAA", METHOD)
    logged_in_client.set_embedding(user, "v1;BBBB", METHOD)
    roster = {s.user_id: s for s in logged_in_client.students(guid, DEMO_CLASS_ID, METHOD)}
    assert roster[user].face_embedders == "v1;BBBB"  # replaced, not appended
    other = {s.user_id: s for s in logged_in_client.students(guid, DEMO_CLASS_ID, "dlib")}
    assert other[user].face_embedders == ""
    assert sandbox.state.embedding(user, METHOD) == "v1;BBBB"


def test_unknown_class_is_rejected_with_the_problem_title(logged_in_client):
    with pytest.raises(UpstreamRejected, match="No such lesson and class") as caught:
        logged_in_client.students(demo_slot(logged_in_client), 1, METHOD)
    assert (caught.value.call, caught.value.status) == ("StudentsByLesson", 400)


def test_a_captive_portal_page_is_not_a_delivered_mark(sandbox, logged_in_client):
    before = sandbox.state.attendance(DEMO_CLASS_ID)
    sandbox.state.set_knobs(malformed={"SetAttendanceStudent": "html", "SetEmbedding": "html"})
    with pytest.raises(MalformedResponse, match="HTML page"):
        logged_in_client.set_attendance(DEMO_CLASS_ID, "00019880", 77)
    with pytest.raises(MalformedResponse, match="HTML page"):
        logged_in_client.set_embedding("00019880", "kfe1;x;1;1;AAA=", METHOD)
    assert sandbox.state.attendance(DEMO_CLASS_ID) == before
    sandbox.state.set_knobs(malformed={})
    logged_in_client.set_attendance(DEMO_CLASS_ID, "00019880", 77)  # the API's own empty 200
    assert sandbox.state.attendance(DEMO_CLASS_ID)["00019880"].confidence == 77


def test_problem_details_keep_field_names_but_not_echoed_ids():
    import requests

    response = requests.Response()
    response.status_code = 400
    response._content = (b'{"title": "One or more validation errors occurred.", "status": 400, '
                         b'"errors": {"userId": ["The value \'00019880\' is not valid."]}}')
    summary = problem_summary(response)
    assert "userId" in summary and "validation errors" in summary
    assert "00019880" not in summary


def test_clock_skew_from_the_date_header():
    server_clock = Clock()
    server_clock.now += 300  # the API's clock is 5 minutes ahead
    with SandboxServer(SandboxState(clock=server_clock)) as server, WiutClient(server.url) as api:
        assert api.clock_skew() is None
        api.login(*DEMO_LOGIN)
        assert api.clock_skew() == pytest.approx(300, abs=2)
        assert api.access_expires_at == pytest.approx(time.time() + 900, abs=3)


# --- tokens over HTTP --------------------------------------------------------------------------
def test_token_expiring_mid_run_is_refreshed_before_the_call(clocks):
    server, api, server_clock, client_clock = clocks
    server_clock.now += 700
    client_clock.now += 700
    assert api.my_modules()
    assert server.state.count("Refresh") == 1
    assert server.state.count("MyModulesStaff") == 1  # refreshed first: no 401 round trip


def test_401_is_refreshed_once_and_the_call_succeeds(clocks):
    server, api, server_clock, _ = clocks
    server_clock.now += 700  # the client still believes its token is valid
    assert api.my_modules()
    assert server.state.count("Refresh") == 1
    assert server.state.count("MyModulesStaff") == 2


def test_rejected_refresh_token_asks_to_log_in_again_without_a_loop(clocks):
    server, api, server_clock, client_clock = clocks
    server.state.revoke_refresh_tokens()
    server_clock.now += 700
    client_clock.now += 700
    with pytest.raises(LoginRequired, match="log in again") as caught:
        api.my_modules()
    assert caught.value.call == "Refresh"
    assert not api.logged_in
    with pytest.raises(LoginRequired):
        api.my_modules()
    assert server.state.count("Refresh") == 1
    assert server.state.count("MyModulesStaff") == 0


def test_401_with_a_rejected_refresh_token_asks_to_log_in_again(clocks):
    server, api, server_clock, _ = clocks
    server.state.revoke_refresh_tokens()
    server_clock.now += 700
    with pytest.raises(LoginRequired, match="log in again"):
        api.my_modules()
    assert not api.logged_in
    assert (server.state.count("MyModulesStaff"), server.state.count("Refresh")) == (1, 1)


def test_old_refresh_token_is_kept_across_refreshes(clocks):
    server, api, server_clock, client_clock = clocks
    for _ in range(3):
        server_clock.now += 700
        client_clock.now += 700
        api.my_modules()
    assert server.state.count("Refresh") == 3


def test_rotated_refresh_token_is_used(clocks):
    server, api, server_clock, client_clock = clocks
    server.state.set_knobs(rotate_refresh=True)
    for _ in range(2):
        server_clock.now += 700
        client_clock.now += 700
        api.my_modules()  # the second refresh would fail with the first, now discarded, refresh token
    assert server.state.count("Refresh") == 2


@pytest.mark.parametrize("server_only", [False, True], ids=["expired-locally", "401"])
def test_ten_threads_on_an_expired_token_cause_exactly_one_refresh(clocks, server_only):
    server, api, server_clock, client_clock = clocks
    server_clock.now += 700
    if not server_only:
        client_clock.now += 700
    start = threading.Barrier(10)
    errors, done = [], []

    def worker():
        start.wait()
        try:
            done.append(api.my_modules())
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(done) == 10
    assert server.state.count("Refresh") == 1


# --- failures and retries ---------------------------------------------------------------------
def test_500s_on_a_read_are_retried_then_reported(logged_in_client, sandbox):
    sandbox.state.set_knobs(failure_rate=1.0)
    with pytest.raises(UpstreamUnavailable, match="500") as caught:
        logged_in_client.my_modules()
    assert (caught.value.call, caught.value.status) == ("MyModulesStaff", 500)
    assert sandbox.state.count("MyModulesStaff") == 4  # 1 + 3 retries


def test_set_attendance_is_retried_through_a_500(logged_in_client, sandbox):
    sandbox.state.set_knobs(fail_next=2)
    logged_in_client.set_attendance(DEMO_CLASS_ID, "00019880", 88)
    assert sandbox.state.count("SetAttendanceStudent") == 3
    assert sandbox.state.attendance(DEMO_CLASS_ID)["00019880"].confidence == 88


def test_429_is_retried(logged_in_client, sandbox):
    sandbox.state.set_knobs(fail_next=1, fail_status=429)
    assert logged_in_client.my_modules()
    assert sandbox.state.count("MyModulesStaff") == 2


def test_login_is_not_retried_on_500(client, sandbox):
    sandbox.state.set_knobs(failure_rate=1.0)
    with pytest.raises(UpstreamUnavailable) as caught:
        client.login(*DEMO_LOGIN)
    assert caught.value.status == 500
    assert sandbox.state.count("Login") == 1


def test_refresh_is_not_retried_on_500_and_tokens_are_kept(clocks):
    server, api, server_clock, client_clock = clocks
    server_clock.now += 700
    client_clock.now += 700
    server.state.set_knobs(fail_next=1)
    with pytest.raises(UpstreamUnavailable) as caught:
        api.my_modules()
    assert caught.value.call == "Refresh"
    assert server.state.count("Refresh") == 1 and api.logged_in
    assert api.my_modules()  # the next call refreshes again


def test_timeouts_are_retried_then_reported(sandbox):
    with WiutClient(sandbox.url, timeout=0.2, retries=1, backoff=CLIENT_BACKOFF_S) as api:
        api.login(*DEMO_LOGIN)
        sandbox.state.set_knobs(latency=(0.6, 0.6))
        with pytest.raises(UpstreamUnavailable, match="in time") as caught:
            api.lessons(DEMO_MODULE_ID, 1)
        assert caught.value.call == "LessonsByParams" and caught.value.status is None
        assert sandbox.state.count("LessonsByParams") == 2


def test_login_timeout_is_not_retried(sandbox):
    sandbox.state.set_knobs(latency=(0.6, 0.6))
    with WiutClient(sandbox.url, timeout=0.2, retries=2, backoff=CLIENT_BACKOFF_S) as api, \
            pytest.raises(UpstreamUnavailable):
        api.login(*DEMO_LOGIN)
    assert sandbox.state.count("Login") == 1


def test_dropped_connections_are_retried_even_for_login(client, sandbox):
    sandbox.state.set_knobs(unavailable_for=60, unavailable_mode="drop")
    with pytest.raises(UpstreamUnavailable, match="could not be reached") as caught:
        client.login(*DEMO_LOGIN)
    assert caught.value.status is None
    assert sandbox.state.count("Login") == 4  # nothing was answered, so repeating cannot lock the account


def test_a_short_outage_within_the_retry_budget_is_ridden_out(logged_in_client, sandbox):
    sandbox.state.set_knobs(fail_next=3, fail_status=503)
    assert logged_in_client.my_modules()
    assert sandbox.state.count("MyModulesStaff") == 4


def test_unreachable_api_is_upstream_unavailable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with WiutClient(f"http://127.0.0.1:{port}/api", timeout=1, retries=1, backoff=CLIENT_BACKOFF_S) as api, \
            pytest.raises(UpstreamUnavailable, match="could not be reached") as caught:
        api.login(*DEMO_LOGIN)
    assert caught.value.call == "Login"
    assert "placeholder" not in str(caught.value)


# --- malformed answers ------------------------------------------------------------------------
@pytest.mark.parametrize("kind, words", [
    ("html", "HTML page"),
    ("missing-field", "no field 'userId'"),
    ("wrong-type", "field 'userId'"),
    ("empty", "not JSON"),
])
def test_malformed_roster_names_the_call(logged_in_client, sandbox, kind, words):
    guid = demo_slot(logged_in_client)
    sandbox.state.set_knobs(malformed={"StudentsByLesson": kind})
    with pytest.raises(MalformedResponse, match="StudentsByLesson") as caught:
        logged_in_client.students(guid, DEMO_CLASS_ID, METHOD)
    assert words in str(caught.value)
    assert sandbox.state.count("StudentsByLesson") == 1  # malformed answers are not retried


def test_wrongly_typed_module_id_is_malformed(logged_in_client, sandbox):
    sandbox.state.set_knobs(malformed={"MyModulesStaff": "wrong-type"})
    with pytest.raises(MalformedResponse, match=r"MyModulesStaff.*'id'"):
        logged_in_client.my_modules()


def test_no_secrets_in_repr(logged_in_client):
    text = repr(logged_in_client)
    assert "eyJ" not in text and "sandbox-password" not in text
