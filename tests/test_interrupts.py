"""Stop signals become Interrupted in the main thread, held while a deferred block runs."""

from __future__ import annotations

import signal

import pytest

from painting_ml.core import interrupts
from painting_ml.core.interrupts import Interrupted, deferred, interruptible

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("sig", interrupts.STOP_SIGNALS, ids=lambda s: s.name)
def test_a_stop_signal_raises_interrupted_with_its_exit_code(sig):
    before = signal.getsignal(sig)
    with pytest.raises(Interrupted) as caught, interruptible():
        signal.raise_signal(sig)
    assert (caught.value.signal_name, caught.value.exit_code, str(caught.value)) == (
        sig.name, 128 + sig, f"interrupted by {sig.name}")
    assert signal.getsignal(sig) is before  # the previous handler is back


def test_a_deferred_block_holds_the_signal_until_it_ends():
    reached_end_of_block = False
    with pytest.raises(Interrupted), interruptible(), deferred():
        signal.raise_signal(signal.SIGTERM)
        reached_end_of_block = True
    assert reached_end_of_block


def test_check_raises_a_held_signal_once():
    with interruptible(), deferred():
        signal.raise_signal(signal.SIGTERM)
        with pytest.raises(Interrupted):
            interrupts.check()
        interrupts.check()  # raised already: cleanup code is not interrupted again


def test_interrupted_is_not_an_exception():
    assert not issubclass(Interrupted, Exception)  # `except Exception` never swallows a stop
