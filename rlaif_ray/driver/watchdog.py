"""No orphans, no litter: the clean-up guard of the driver's private local Ray.

Why a process of its own: a driver killed by SIGKILL (or SIGTERM, which Python does not
turn into an exception) runs none of its clean-up code, and Ray's dashboard agent and
runtime-env agent then outlive their raylet for minutes, while the private temp dir stays
in /tmp for good. `ray_session` starts this watchdog before `ray.init`, so a driver killed
during start-up is covered too.

How it learns of the driver's end: it holds the read end of a pipe whose write end only the
driver holds (pipes are opened close-on-exec, so Ray's processes don't inherit it). After
`ray.shutdown()` the driver writes its verdict ("ok" or "failed") and closes the pipe; end
of file without a verdict means the driver died, however it died. A forked child that kept
the write end would delay that end of file, hence the parent check on every poll: once the
driver is gone the watchdog is re-parented.

What it touches: only processes that reference this cluster's own paths (the temp dir we
created, or with a user-given temp dir only the session dirs this driver's Ray made there),
never another Ray on the same machine. What it removes: only the temp dir we created; a
user-given one is the user's. On failure Ray's session logs are first copied to the run's
log folder, since the temp dir that held them is about to go.
"""

from __future__ import annotations

import argparse
import glob
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

OK, FAILED = b"ok\n", b"failed\n"
POLL_S = 0.5              # how often the driver's liveness is checked besides the pipe
KILL_ROUNDS = 5           # a worker forked by a raylet mid-sweep is caught by the next round
KILL_WAIT_S = 2.0         # per round: how long the killed processes get to disappear
KILL_POLL_S = 0.05
FINISH_TIMEOUT_S = 60.0   # how long a normally ending driver waits for the clean-up
CLOCK_SLACK_S = 2.0       # file times come from a coarser clock than time.time()
RAY_PROCESS_TITLE = "ray::"  # workers and agents rename themselves: "ray::IDLE", "ray::DashboardAgent"


class Watchdog:
    """The driver's handle on its watchdog process."""

    def __init__(self, temp_dir: str, owned: bool, keep_logs_in: Path | None):
        args = [sys.executable, "-m", __name__, "--driver-pid", str(os.getpid()), "--temp-dir", temp_dir,
                "--since", repr(time.time())]
        if owned:
            args.append("--owned")
        if keep_logs_in is not None:
            args += ["--keep-logs-in", str(keep_logs_in)]
        # A session of its own: a Ctrl-C at the terminal must not stop the clean-up.
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, start_new_session=True)

    def finish(self, failed: bool) -> None:
        """Hand over the verdict and wait until Ray's leftovers and the temp dir are gone."""
        try:
            self.proc.stdin.write(FAILED if failed else OK)
            self.proc.stdin.close()
        except OSError:  # the watchdog died early; nothing more to tell it
            pass
        try:
            self.proc.wait(FINISH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"rlaif-ray: Ray clean-up still running (pid {self.proc.pid})", file=sys.stderr)


def session_dirs(temp_dir: str, driver_pid: int, since: float) -> list[str]:
    """The session dirs this driver's Ray made in `temp_dir` (Ray names them
    session_<date>_<driver pid>); older ones of a reused pid don't count."""
    found = glob.glob(os.path.join(glob.escape(temp_dir), f"session_*_{driver_pid}"))
    return [d for d in found if os.path.isdir(d) and os.stat(d).st_mtime >= since - CLOCK_SLACK_S]


def references(proc: psutil.Process, roots: list[str]) -> bool:
    """Whether `proc` belongs to the cluster under `roots`: a path under a root on its command
    line (raylet, GCS, dashboard, monitors, a starting worker), or for a process that renamed
    itself "ray::...", a file under a root held open (its log files)."""
    cmdline = " ".join(proc.cmdline())
    if any(root + os.sep in cmdline for root in roots):
        return True
    return cmdline.startswith(RAY_PROCESS_TITLE) and any(
        f.path.startswith(root + os.sep) for f in proc.open_files() for root in roots)


def cluster_processes(roots: list[str], spare: set[int]) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        if proc.pid in spare:
            continue
        try:
            if references(proc, roots):
                found.append(proc)
        except psutil.Error:  # gone meanwhile, or not ours to inspect
            continue
    return found


def kill_cluster(roots: list[str], spare: set[int]) -> None:
    for _ in range(KILL_ROUNDS):
        procs = cluster_processes(roots, spare)
        if not procs:
            return
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass
        wait_gone(procs, KILL_WAIT_S)


def wait_gone(procs: list[psutil.Process], timeout_s: float) -> None:
    """Until each process is gone or a zombie: an orphan's zombie waits for init to reap it,
    holds nothing and runs nothing (psutil.wait_procs would wait it out to the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(proc) for proc in procs):
        time.sleep(KILL_POLL_S)


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def keep_logs(sessions: list[str], keep_logs_in: Path) -> None:
    for session in sessions:
        try:
            shutil.copytree(os.path.join(session, "logs"), keep_logs_in / os.path.basename(session),
                            symlinks=True, dirs_exist_ok=True)
        except (OSError, shutil.Error) as exc:  # a partial copy still helps
            print(f"rlaif-ray watchdog: Ray logs of {session} not fully kept: {exc}", file=sys.stderr)


def clean_up(args: argparse.Namespace, failed: bool) -> None:
    sessions = session_dirs(args.temp_dir, args.driver_pid, args.since)
    kill_cluster([args.temp_dir] if args.owned else sessions, spare={os.getpid(), args.driver_pid})
    if failed and args.keep_logs_in is not None:
        keep_logs(sessions, args.keep_logs_in)
    if args.owned:
        shutil.rmtree(args.temp_dir, ignore_errors=True)


def wait_for_verdict(driver_pid: int) -> bool:
    """True (failed) unless the driver wrote OK before closing the pipe."""
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], POLL_S)
        if ready:
            return os.read(sys.stdin.fileno(), len(FAILED)) != OK
        if os.getppid() != driver_pid:
            return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driver-pid", type=int, required=True)
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--since", type=float, required=True, help="time.time() before ray.init")
    parser.add_argument("--owned", action="store_true", help="we created --temp-dir: remove it at the end")
    parser.add_argument("--keep-logs-in", type=Path, help="where Ray's session logs go when the run failed")
    args = parser.parse_args(argv)
    clean_up(args, failed=wait_for_verdict(args.driver_pid))


if __name__ == "__main__":
    main()
