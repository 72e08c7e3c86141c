"""A Ctrl-C that lands in a finalizer is swallowed by Python; the flag still stops the run."""

from __future__ import annotations

import os
import signal

import pytest

from rlaif_ray.driver.interrupts import remembered_ctrl_c, stop_if_interrupted


class _SignalsWhenDropped:
    def __del__(self):
        # SIGINT delivered while a finalizer runs: its KeyboardInterrupt is "ignored".
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # let the handler run here, inside __del__
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_swallowed_ctrl_c_is_raised_at_the_next_boundary():
    with remembered_ctrl_c():
        obj = _SignalsWhenDropped()
        del obj  # KeyboardInterrupt raised and swallowed in __del__: nothing reaches us here
        with pytest.raises(KeyboardInterrupt):
            stop_if_interrupted()
        stop_if_interrupted()  # raised once, then forgotten


def test_an_ordinary_ctrl_c_still_raises_where_it_lands_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with remembered_ctrl_c():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10**7):  # the interrupt lands here
                pass
    assert signal.getsignal(signal.SIGINT) is before
    stop_if_interrupted()  # the flag went with the block
