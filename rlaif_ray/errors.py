"""Every error the product reports to its user, in one Ray-free module (the CLI maps them to
exit codes without importing Ray). Every message is one line, or one line per bad field;
full tracebacks go to the logs.

Errors a user can fix before or outside a run (exit 2): ConfigError, DataError,
PromptFormatError, RunDirError, CheckpointError, PackageError, ClusterConfigError,
JobClientError, PlanError. Errors of a running run (exit 1): ActorFailed, ActorCodeError,
RunStopped.
"""

from __future__ import annotations

from pathlib import Path

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


# --------------------------------------------------------------------------- before a run


class ConfigError(ValueError):
    """A run config that cannot be used; the message names every bad field path."""


class DataError(ValueError):
    """A dataset that cannot be used; the message names the source and the field."""


class PromptFormatError(ValueError):
    """A prompt record that cannot be formatted; the message names the record."""


class RunDirError(ValueError):
    """A run dir that cannot be used as asked (refused before anything is written)."""


class CheckpointError(RunDirError):
    """No checkpoint can be used (or one could not be written intact); the CLI prints it
    in one line and exits 2."""


class PackageError(ConfigError):
    """The job's working_dir cannot carry what the config needs; one line."""


class PlanError(ValueError):
    """Metadata or tensors that do not fit the bucket plan; the message names the tensor."""


class JobClientError(RuntimeError):
    """A job-API problem the user can fix; the message is one line."""


class ClusterConfigError(ValueError):
    """A cluster file that `ray up` / KubeRay would refuse, or that cannot host the run."""

    def __init__(self, path: str | Path, errors: list[str]):
        self.errors = errors
        super().__init__(f"{path}:\n" + "\n".join(f"  {e}" for e in errors))
