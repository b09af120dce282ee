"""LED and buzzer signals on gpiozero's own MockFactory: the pins' recorded states are the truth."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from gpiozero import LED, Device
from gpiozero.exc import BadPinFactory
from gpiozero.pins.mock import MockFactory

import kiosk.feedback as feedback_module
from kiosk.errors import FeedbackError
from kiosk.feedback import Feedback, Timings, pin_factory_for
from tests.helpers import wait_until

GREEN, RED, BUZZER = 17, 27, 22
PINS = SimpleNamespace(gpio="mock", led_green_pin=GREEN, led_red_pin=RED, buzzer_pin=BUZZER)
QUICK = Timings(recognised_on=0.03, beep=0.01, already_on=0.01, already_off=0.01, unknown_on=0.03,
                error_on=0.01, error_off=0.01)


def states(factory: MockFactory, pin: int) -> list[bool]:
    return [s.state for s in factory.pin(pin).states]


@pytest.fixture
def factory():
    threads_before = threading.active_count()
    global_factory = Device.pin_factory
    factory = MockFactory()
    yield factory
    factory.reset()
    factory.close()
    assert Device.pin_factory is global_factory, "the global pin factory was touched"
    assert wait_until(lambda: threading.active_count() == threads_before), "a blink thread leaked"


@pytest.fixture
def feedback(factory):
    with Feedback(PINS, pin_factory=factory, timings=QUICK) as feedback:
        yield feedback


def test_recognised_lights_green_once_and_beeps_once(factory, feedback):
    feedback.recognised()
    assert wait_until(lambda: len(factory.pin(GREEN).states) == 3 and len(factory.pin(BUZZER).states) == 3)
    factory.pin(GREEN).assert_states([False, True, False])
    assert states(factory, GREEN) == [False, True, False]
    assert states(factory, BUZZER) == [False, True, False]
    assert states(factory, RED) == [False]


def test_recognised_returns_before_the_light_goes_off(factory):
    slow = Timings(recognised_on=30.0)
    with Feedback(PINS, pin_factory=factory, timings=slow) as feedback:
        feedback.recognised()  # would block for 30 s if it were not in the background
        assert wait_until(lambda: factory.pin(GREEN).state)
    assert states(factory, GREEN) == [False, True, False]  # close switched it off


def test_already_marked_blinks_green_twice_without_a_beep(factory, feedback):
    feedback.already_marked()
    assert wait_until(lambda: len(factory.pin(GREEN).states) == 5)
    assert states(factory, GREEN) == [False, True, False, True, False]
    assert states(factory, BUZZER) == [False]


def test_unknown_lights_red_once(factory, feedback):
    feedback.unknown()
    assert wait_until(lambda: len(factory.pin(RED).states) == 3)
    assert states(factory, RED) == [False, True, False]
    assert states(factory, GREEN) == [False] and states(factory, BUZZER) == [False]


def test_error_blinks_red_until_cleared(factory, feedback):
    feedback.error()
    feedback.error()  # repeating it does not restart anything
    assert wait_until(lambda: len(factory.pin(RED).states) >= 6)  # blinking, not a single flash
    assert feedback.error_active
    threads_while_blinking = threading.active_count()
    feedback.clear_error()
    assert not feedback.error_active
    assert factory.pin(RED).state is False
    assert threading.active_count() == threads_while_blinking - 1  # the blink thread is gone
    settled = len(factory.pin(RED).states)
    feedback.unknown()  # red works normally again
    assert wait_until(lambda: len(factory.pin(RED).states) == settled + 2)


def test_unknown_during_an_error_keeps_the_error_blink(factory, feedback):
    feedback.error()
    feedback.unknown()
    before = len(factory.pin(RED).states)
    assert wait_until(lambda: len(factory.pin(RED).states) >= before + 4)  # still blinking
    assert feedback.error_active


def test_recent_lists_signals_with_their_times(factory):
    ticks = iter([10.0, 11.5, 12.0, 13.0, 14.0])
    with Feedback(PINS, pin_factory=factory, timings=QUICK, clock=lambda: next(ticks)) as feedback:
        feedback.recognised()
        feedback.already_marked()
        feedback.unknown()
        feedback.error()
        feedback.clear_error()
        assert feedback.recent() == [(10.0, "recognised"), (11.5, "already_marked"), (12.0, "unknown"),
                                     (13.0, "error"), (14.0, "clear_error")]


def test_history_keeps_only_the_latest_signals(factory, feedback):
    for _ in range(feedback_module.HISTORY_SIZE + 10):
        feedback.already_marked()
    assert len(feedback.recent()) == feedback_module.HISTORY_SIZE


def test_close_is_idempotent_releases_pins_and_later_signals_do_nothing(factory):
    feedback = Feedback(PINS, pin_factory=factory, timings=QUICK)
    feedback.error()
    feedback.close()
    feedback.close()
    feedback.recognised()
    assert [name for _, name in feedback.recent()] == ["error"]
    assert factory.pin(RED).state is False
    LED(RED, pin_factory=factory).close()  # the pin is free again


def test_two_devices_on_one_pin_is_a_feedback_error_and_nothing_stays_reserved(factory):
    clash = SimpleNamespace(gpio="mock", led_green_pin=GREEN, led_red_pin=GREEN, buzzer_pin=BUZZER)
    with pytest.raises(FeedbackError, match="cannot be set up"):
        Feedback(clash, pin_factory=factory)
    Feedback(PINS, pin_factory=factory).close()  # green was released


def test_an_invalid_pin_is_a_feedback_error(factory):
    with pytest.raises(FeedbackError):
        Feedback(SimpleNamespace(gpio="mock", led_green_pin=99, led_red_pin=RED, buzzer_pin=BUZZER),
                 pin_factory=factory)


def test_mock_setting_builds_its_own_factory_and_resets_it_on_close():
    feedback = Feedback(PINS, timings=QUICK)
    own = feedback.pin_factory
    assert isinstance(own, MockFactory)
    feedback.recognised()
    feedback.close()
    assert own.pins == {} and own._reservations == {}


def test_auto_off_a_pi_mocks_and_says_so_once(tmp_path, capsys):
    model = tmp_path / "model"
    model.write_text("QEMU Virtual Machine\0")
    factory = pin_factory_for("auto", model_file=model)
    assert isinstance(factory, MockFactory)
    assert capsys.readouterr().out.count("GPIO is mocked") == 1
    assert isinstance(pin_factory_for("auto", model_file=tmp_path / "missing"), MockFactory)


def test_auto_on_a_pi_uses_the_real_pins(tmp_path, monkeypatch, capsys):
    model = tmp_path / "model"
    model.write_text("Raspberry Pi 4 Model B Rev 1.5\0")
    real = object()
    monkeypatch.setattr(feedback_module, "_default_factory", lambda: real)
    assert pin_factory_for("auto", model_file=model) is real
    assert capsys.readouterr().out == ""


def test_auto_on_a_pi_whose_pins_fail_falls_back_to_mock(tmp_path, monkeypatch, capsys):
    model = tmp_path / "model"
    model.write_text("Raspberry Pi 5 Model B Rev 1.0\0")

    def broken():
        raise BadPinFactory("Unable to load any default pin factory!")

    monkeypatch.setattr(feedback_module, "_default_factory", broken)
    assert isinstance(pin_factory_for("auto", model_file=model), MockFactory)
    assert "GPIO is mocked" in capsys.readouterr().out


def test_native_pins_that_fail_are_a_feedback_error(monkeypatch):
    def broken():
        raise BadPinFactory("Unable to load any default pin factory!")

    monkeypatch.setattr(feedback_module, "_default_factory", broken)
    with pytest.raises(FeedbackError, match="set gpio to mock"):
        pin_factory_for("native")


def test_clearing_one_error_reason_keeps_the_blink_for_the_other(factory, feedback):
    feedback.error(feedback_module.ERROR_RECORDING)        # the API is down
    feedback.error(feedback_module.ERROR_CAMERA)           # and the camera fails
    feedback.clear_error(feedback_module.ERROR_CAMERA)     # the camera comes back: the API is still down
    before = len(factory.pin(RED).states)
    assert wait_until(lambda: len(factory.pin(RED).states) >= before + 4)  # still blinking
    assert feedback.error_reasons == {feedback_module.ERROR_RECORDING}
    feedback.clear_error(feedback_module.ERROR_CAMERA)     # clearing it again changes nothing
    assert feedback.error_active
    feedback.clear_error(feedback_module.ERROR_RECORDING)
    assert not feedback.error_active and factory.pin(RED).state is False
    assert [name for _, name in feedback.recent()] == ["error", "error", "clear_error", "clear_error"]
