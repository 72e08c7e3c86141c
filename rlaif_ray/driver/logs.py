"""Where a run's output goes: a quiet terminal, and everything else in files under logs/.

By default the terminal shows only the run's own lines: which roles are starting and when
each is ready, the progress bar, warnings from rlaif_ray (an actor replaced, a resume), the
summary. All the rest goes to the run's `logs/` folder (RUN_DIR/logs, or OUTPUT_DIR/logs
for the jobs that write an output dir instead of a run dir):

    logs/<role>-<index>.log   file descriptors 1 and 2 of that actor's process: Python
                              prints and logging, and what C/C++ code writes (vLLM engine
                              dumps, torch and DeepSpeed op builders); a replacement actor
                              appends to its predecessor's file
    logs/driver.log           file descriptors 1 and 2 of the driver while Ray is up: Ray's
                              start-up notices, what Ray streams from its workers, library
                              logging and warnings in the driver

`--verbose` (`RunLogs(None)`, also `STREAM`) redirects nothing: every process prints to the
terminal as Ray streams it, as before this module existed.

In cluster mode an actor's file is written on the node the actor runs on.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from tqdm import tqdm


class Terminal:
    """The terminal the run's own lines go to: sys.stderr, or while `RunLogs.capture_driver`
    has pointed the driver's stderr at driver.log, a stream on the terminal it had before.

    A proxy rather than a stream so that a progress bar created outside the capture keeps
    drawing on the terminal inside it (tqdm(file=logs.terminal)).
    """

    def __init__(self):
        self.stream = None  # set only while the driver's output is captured

    def __getattr__(self, name):  # write, flush, fileno, isatty, encoding, ...
        if name == "stream":  # not yet set (e.g. mid-copy): don't recurse
            raise AttributeError(name)
        return getattr(self.stream or sys.stderr, name)


class RunLogs:
    """A run's log folder (None: `--verbose`, stream everything), decided once per run from
    its run dir or output dir and passed explicitly to `ray_session` and every `ActorPool`."""

    def __init__(self, directory: str | Path | None):
        # Absolute: actors write these files from their own working directories.
        self.dir = Path(directory).resolve() if directory is not None else None
        self.terminal = Terminal()

    @classmethod
    def under(cls, out_dir: str | Path, verbose: bool) -> RunLogs:
        """OUT_DIR/logs, or nothing redirected with `verbose`."""
        return cls(None if verbose else Path(out_dir) / "logs")

    @property
    def verbose(self) -> bool:
        return self.dir is None

    def actor_file(self, name: str) -> str | None:
        """Where actor `name` (e.g. "rollout-0") writes, or None when nothing is redirected."""
        if self.dir is None:
            return None
        return str(self.dir / f"{name.replace('/', '_')}.log")

    def say(self, line: str) -> None:
        """A line of the run's own on the terminal (above any progress bar, not through it)."""
        tqdm.write(line, file=self.terminal)

    @contextmanager
    def quiet_loading(self):
        """No `datasets` progress bars ("Generating train split") while the driver reads its
        prompts. That happens before the session, when the log folder may not exist yet (a
        run refused for bad input must leave its run dir untouched), so it can't go to a file."""
        if self.dir is None:
            yield
            return
        import datasets

        was_enabled = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            yield
        finally:
            if was_enabled:
                datasets.enable_progress_bars()

    @contextmanager
    def capture_driver(self):
        """Point the driver's fds 1 and 2 at logs/driver.log for the duration; the run's own
        lines still reach the terminal through `self.terminal` and the `rlaif_ray` logger.

        At the fd level, not by swapping sys.stdout: Ray and the libraries bound their
        logging handlers to the stream objects at import, and some output comes from C++.
        """
        if self.dir is None:
            yield
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        log_fd = os.open(self.dir / "driver.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for fd in (1, 2):
            os.dup2(log_fd, fd)
        os.close(log_fd)
        # Nested in another capture (a sweep's, around its runs): the terminal is the outer one's.
        terminal_fd = _TERMINALS[-1].fileno() if _TERMINALS else saved[2]
        self.terminal.stream = os.fdopen(os.dup(terminal_fd), "w", buffering=1)
        _TERMINALS.append(self.terminal.stream)
        # rlaif_ray's warnings matter to the person at the terminal; they also propagate
        # to the root logger (now writing into driver.log), so the file has them in order.
        handler = _TerminalHandler(self.terminal)
        rlaif_log = logging.getLogger("rlaif_ray")
        rlaif_log.addHandler(handler)
        try:
            yield
        except BaseException:
            self.say(f"rlaif-ray: the output of every actor and of the driver is in {self.dir}/")
            raise
        finally:
            rlaif_log.removeHandler(handler)
            sys.stdout.flush()
            sys.stderr.flush()
            stream, self.terminal.stream = self.terminal.stream, None
            _TERMINALS.remove(stream)
            stream.close()
            for fd in (1, 2):
                os.dup2(saved[fd], fd)
                os.close(saved[fd])


_TERMINALS: list = []  # the terminal streams of the captures now active, innermost last

STREAM = RunLogs(None)  # nothing redirected: what library callers and benchmarks get unless they choose


class _TerminalHandler(logging.Handler):
    def __init__(self, terminal: Terminal):
        super().__init__(logging.WARNING)
        self.terminal = terminal
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=self.terminal)


def redirect_output(path: str) -> None:
    """Send this process's fds 1 and 2 (appending) to `path`. Runs first thing in an actor."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def set_up_first(cls: type, steps: list[tuple[Callable, tuple]]) -> type:
    """`cls` whose instances first run each `fn(*args)` of `steps` in their own process (e.g.
    `redirect_output(path)`, `actors.cores.pin_to_cores(cores)`), then construct.

    Why a subclass: an actor gets a process of its own, and its constructor is the first of
    our code that runs there, before any engine is imported. Ray's runtime_env
    `worker_process_setup_hook` would run even earlier, but Ray 2.60 honours it only for the
    whole job (ray.init), not per actor, so it cannot carry a per-actor file or core set.
    The actor classes themselves stay unaware of logging and placement.
    """

    class SetUp(cls):
        def __init__(self, *args, **kwargs):
            for fn, fn_args in steps:
                fn(*fn_args)
            super().__init__(*args, **kwargs)

    # Ray names actors after the class (`ray list actors`, error messages). The class still
    # travels by value: this module has no attribute of that name to import it by.
    SetUp.__name__ = SetUp.__qualname__ = cls.__name__
    SetUp.__doc__ = cls.__doc__
    return SetUp
