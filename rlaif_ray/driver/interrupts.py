"""A Ctrl-C that is never lost.

Python raises KeyboardInterrupt wherever the main thread happens to be when SIGINT arrives.
If that is inside a finalizer (e.g. Ray's `ActorHandle.__del__`, which runs whenever a handle
is dropped), Python prints "Exception ignored in ..." and carries on: the run would ignore
the user's Ctrl-C. So the handler also sets a flag, and the loops that run for long
(iterations, sweep runs) check it at every boundary: a swallowed Ctrl-C still stops the run
there, at the latest one iteration later.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

_pending = False


def _on_sigint(signum, frame):
    global _pending
    _pending = True
    raise KeyboardInterrupt


@contextmanager
def remembered_ctrl_c():
    """While the block runs (in the main thread), SIGINT raises KeyboardInterrupt as usual
    and is also remembered for `stop_if_interrupted`."""
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _pending = False
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _pending = False


def stop_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C came and was swallowed before reaching us."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt
