"""Child processes that never outlive their parent, and the one way to stop them.

A child started with `spawn` leads its own process group (so a terminal's Ctrl-C reaches the parent
only, and the parent stops its children in order) and, on Linux, asks the kernel for SIGTERM when
its parent dies (PR_SET_PDEATHSIG), so even a parent killed with SIGKILL leaves nothing behind. The
kernel sends that signal when the *thread* that forked the child exits: spawn from the main thread.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child, between fork and exec
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent may have died before prctl took effect; then nobody would signal us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def spawn(cmd: Sequence[str], *, stdout: int | IO[bytes] | IO[str] | None = subprocess.DEVNULL,
          stderr: int | IO[bytes] | IO[str] | None = subprocess.STDOUT, detached: bool = False,
          cwd: str | Path | None = None, text: bool = False,
          env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes] | subprocess.Popen[str]:
    """Start `cmd` in its own process group, tied to this process's life unless `detached`."""
    tie = not detached and sys.platform == "linux"
    # The death signal follows the forking thread, so a child forked by a worker thread would die
    # with that thread.
    if tie and threading.current_thread() is not threading.main_thread():
        raise RuntimeError("spawn a tied child from the main thread")
    return subprocess.Popen(list(cmd), stdout=stdout, stderr=stderr, cwd=cwd, text=text, start_new_session=True,
                            env=None if env is None else {**os.environ, **env},
                            preexec_fn=_die_with_parent(os.getpid()) if tie else None)


def terminate(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None, sig: int = signal.SIGTERM,
              timeout: float = 15.0) -> None:
    """Send `sig` to the child's process group and wait; SIGKILL if it has not exited by `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def exit_on_stop_signals() -> None:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt in the main thread, so Ctrl-C, a service manager's
    stop and `timeout` all run the same `finally` blocks and the children are stopped in order. SIGINT is
    set explicitly: a job a non-interactive shell starts in the background (`cmd &` in a script) inherits
    it ignored, and then Ctrl-C, or a supervisor's SIGINT, would do nothing."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
