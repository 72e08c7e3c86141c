"""The errors a run reports to its user, in one Ray-free module (the CLI maps them to exit
codes without importing Ray). Every message is one line; full tracebacks go to the logs."""

from __future__ import annotations

# Longest piece of a cause's text carried into a one-line message.
MAX_CAUSE_CHARS = 300

# Exit codes of the `rlaif-ray` command besides 0 (done) and 1 (the run failed or stopped).
EXIT_USAGE = 2          # a config, input or run dir the user can fix
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT


def last_line(err: BaseException) -> str:
    """`Type: last non-empty line` of an error (a Ray error's text is a whole traceback; the
    error raised inside an actor is its `cause`)."""
    cause = getattr(err, "cause", None) or err
    lines = [l.strip() for l in str(cause).splitlines() if l.strip()]
    last = lines[-1] if lines else ""
    name = type(cause).__name__
    text = last if last.startswith(name) else (f"{name}: {last}" if last else name)
    return text if len(text) <= MAX_CAUSE_CHARS else text[:MAX_CAUSE_CHARS] + "…"


class ActorFailed(RuntimeError):
    """An actor was lost (died, or no answer within its timeout) and the run could not
    recover it there."""

    def __init__(self, actor: str, what: str, cause: BaseException | None = None):
        super().__init__(f"{actor}: {what}" + (f" ({last_line(cause)})" if cause else ""))
        self.actor = actor


class ActorCodeError(RuntimeError):
    """An actor's own code raised (a bug, bad data): redoing the call would raise again."""

    def __init__(self, actor: str, call: str, cause: str):
        super().__init__(f"{actor}: {call} raised {cause} (full text in logs/driver.log)")
        self.actor = actor


class RunStopped(RuntimeError):
    """The run could not go on (e.g. a learner died); the message says how to resume."""
