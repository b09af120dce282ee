"""The door's signals: a green LED, a red LED and an active buzzer, through gpiozero.

Wiring (BCM numbers from settings ``led_green_pin``, ``led_red_pin``, ``buzzer_pin``): each LED's
anode through a ~330 ohm resistor to its pin, cathode to ground; an active buzzer (it sounds on DC,
no tone needed) between its pin and ground (a transistor if it draws more than ~15 mA).

Every signal returns at once: gpiozero blinks and beeps in its own background threads. Off the Pi
the pins are gpiozero's ``MockFactory`` (see :func:`pin_factory_for`), so the kiosk and its tests
run anywhere.

Example::

    with Feedback(settings) as feedback:
        feedback.recognised()        # green ~1.5 s and one short beep
        feedback.error("camera")     # red blinks slowly until every reason is cleared
        feedback.clear_error("camera")

The error blink has reasons (:data:`ERROR_CAMERA`, :data:`ERROR_RECORDING`, or any short word): it stays
on while at least one is set, so the camera coming back never hides an API outage, nor the reverse.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gpiozero import LED, Buzzer, Device
from gpiozero.exc import GPIOZeroError
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory

from kiosk.errors import FeedbackError

PI_MODEL_FILE = Path("/proc/device-tree/model")
HISTORY_SIZE = 50
Clock = Callable[[], float]
SIGNALS = ("recognised", "already_marked", "unknown", "error", "clear_error")
ERROR_CAMERA = "camera"  # the running class's camera failed and is being reopened
ERROR_RECORDING = "recording"  # marks cannot reach the API: upstream down, or the teacher must log in again


class PinSettings(Protocol):
    """The settings :class:`Feedback` reads (``kiosk.config.Settings`` has them)."""

    gpio: str
    led_green_pin: int
    led_red_pin: int
    buzzer_pin: int


@dataclass(frozen=True)
class Timings:
    """How long each part of a signal lasts, in seconds."""

    recognised_on: float = 1.5
    beep: float = 0.1
    already_on: float = 0.2
    already_off: float = 0.2
    unknown_on: float = 1.0
    error_on: float = 0.5
    error_off: float = 1.5


def is_raspberry_pi(model_file: Path = PI_MODEL_FILE) -> bool:
    """True when the device tree says this machine is a Raspberry Pi."""
    try:
        return "raspberry pi" in model_file.read_text(errors="replace").lower()
    except OSError:
        return False


def _default_factory() -> Factory:
    """gpiozero's own choice of real pins (lgpio, RPi.GPIO, pigpio, native), made once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gpiozero warns for each library it falls back from
        Device.ensure_pin_factory()
    return Device.pin_factory


def pin_factory_for(gpio: str, *, model_file: Path = PI_MODEL_FILE) -> Factory:
    """The pin factory for ``settings.gpio``: ``mock``, ``native`` (real pins) or ``auto``.

    ``auto`` uses the real pins on a Raspberry Pi and gpiozero's ``MockFactory`` elsewhere (or
    when the real pins cannot be used), printing one line when it mocks. ``native`` raises
    :class:`FeedbackError` when the real pins cannot be used.
    """
    if gpio == "mock":
        return MockFactory()
    if gpio == "native":
        try:
            return _default_factory()
        except (GPIOZeroError, ImportError, OSError, RuntimeError) as exc:
            raise FeedbackError(f"The GPIO pins cannot be used ({type(exc).__name__}); set gpio to mock "
                                "to run without LED and buzzer.") from exc
    if gpio != "auto":
        raise FeedbackError(f"The gpio setting {gpio!r} is not auto, mock or native.")
    if is_raspberry_pi(model_file):
        try:
            return _default_factory()
        except (GPIOZeroError, ImportError, OSError, RuntimeError) as exc:
            print(f"GPIO is mocked: the Pi's pins cannot be used ({type(exc).__name__}).")
            return MockFactory()
    print("GPIO is mocked: not a Raspberry Pi, LED and buzzer signals are only recorded.")
    return MockFactory()


class Feedback:
    """Green LED, red LED and buzzer on the pins named in ``settings`` (any :class:`PinSettings`).

    ``pin_factory`` None means :func:`pin_factory_for(settings.gpio) <pin_factory_for>`; a mock
    factory made here is reset on :meth:`close`, a factory passed in stays the caller's. ``clock``
    (monotonic seconds) stamps the :meth:`recent` history. Raises :class:`FeedbackError` when a pin
    cannot be used (invalid, or already taken).
    """

    def __init__(self, settings: PinSettings, *, pin_factory: Factory | None = None,
                 timings: Timings | None = None, clock: Clock = time.monotonic):
        self._own_factory = pin_factory is None
        self.pin_factory = pin_factory if pin_factory is not None else pin_factory_for(settings.gpio)
        self.timings = timings or Timings()
        self._clock = clock
        self._lock = threading.Lock()
        self._history: deque[tuple[float, str]] = deque(maxlen=HISTORY_SIZE)
        self._error_reasons: set[str] = set()
        self._closed = False
        self.green = self.red = self.buzzer = None
        try:
            self.green = LED(settings.led_green_pin, pin_factory=self.pin_factory)
            self.red = LED(settings.led_red_pin, pin_factory=self.pin_factory)
            self.buzzer = Buzzer(settings.buzzer_pin, pin_factory=self.pin_factory)
        except GPIOZeroError as exc:
            self.close()
            raise FeedbackError(f"The LED/buzzer pins cannot be set up: {exc}.") from exc

    # --- signals (each does nothing once closed) ---------------------------------------------------
    def recognised(self) -> None:
        """A student was recognised and marked: green on ~1.5 s and one short beep."""
        with self._lock:
            if self._record("recognised"):
                self.green.blink(on_time=self.timings.recognised_on, off_time=0, n=1)
                self.buzzer.beep(on_time=self.timings.beep, off_time=0, n=1)

    def already_marked(self) -> None:
        """A student already marked came by again: green blinks twice, no beep."""
        with self._lock:
            if self._record("already_marked"):
                self.green.blink(on_time=self.timings.already_on, off_time=self.timings.already_off, n=2)

    def unknown(self) -> None:
        """A face not on the roster: red ~1 s (while the error blink is on, it is kept instead)."""
        with self._lock:
            if self._record("unknown") and not self._error_reasons:
                self.red.blink(on_time=self.timings.unknown_on, off_time=0, n=1)

    def error(self, reason: str = ERROR_RECORDING) -> None:
        """Something stops the kiosk from recording (``reason``, e.g. :data:`ERROR_CAMERA`): red blinks
        slowly until every reason is cleared. Repeating a reason that is already set does nothing."""
        with self._lock:
            if self._closed or reason in self._error_reasons:
                return
            self._record("error")
            if not self._error_reasons:
                self.red.blink(on_time=self.timings.error_on, off_time=self.timings.error_off)
            self._error_reasons.add(reason)

    def clear_error(self, reason: str = ERROR_RECORDING) -> None:
        """``reason`` is resolved; the blink stops once no other reason remains. Unset reasons do nothing."""
        with self._lock:
            if self._closed or reason not in self._error_reasons:
                return
            self._record("clear_error")
            self._error_reasons.discard(reason)
            if not self._error_reasons:
                self.red.off()

    def _record(self, name: str) -> bool:
        """Add ``name`` to the history (caller holds the lock); False when closed."""
        if self._closed:
            return False
        self._history.append((self._clock(), name))
        return True

    @property
    def error_active(self) -> bool:
        """True while the slow red error blink is on (at least one reason is set)."""
        return bool(self._error_reasons)

    @property
    def error_reasons(self) -> frozenset[str]:
        """The reasons the error blink is on for; empty when it is off."""
        with self._lock:
            return frozenset(self._error_reasons)

    def recent(self) -> list[tuple[float, str]]:
        """The latest signals, oldest first, as (monotonic seconds, name); names are :data:`SIGNALS`."""
        with self._lock:
            return list(self._history)

    # --- lifetime --------------------------------------------------------------------------------
    def close(self) -> None:
        """Switch everything off and release the pins; safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for device in (self.buzzer, self.red, self.green):
            if device is not None:
                device.off()  # gpiozero's close() stops a blink but leaves the output as it was
                device.close()
        if self._own_factory and isinstance(self.pin_factory, MockFactory):
            self.pin_factory.reset()
            self.pin_factory.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Feedback:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
