"""Every process `pol demo` and `pol chain up` start ends when they end: on SIGTERM (a service
manager, `timeout`), on Ctrl-C, and even when they are killed outright (the kernel's parent-death signal)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pol_chain.anvil import find_free_port

from .helpers import descendants, wait_gone


def start_pol(args: list[str], cwd: Path, sigint_ignored: bool = False) -> subprocess.Popen[str]:
    # As a script's `cmd &` starts it (a non-interactive shell): SIGINT ignored, and the child inherits that.
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    return subprocess.Popen([sys.executable, "-m", "pol_cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=cwd, preexec_fn=ignore)


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 300) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if marker in line or time.monotonic() > deadline:
            break
    assert any(marker in ln for ln in lines), "".join(lines)
    return lines


def chain_up(tmp_path: Path, sigint_ignored: bool = False) -> tuple[subprocess.Popen[str], set[int]]:
    proc = start_pol(["chain", "up", "--port", str(find_free_port()), "--deployment", str(tmp_path / "d.json")], tmp_path,
                     sigint_ignored)
    read_until(proc, "Ctrl-C stops the chain")
    children = descendants(proc.pid)
    assert children, "chain up started no anvil"
    return proc, children


@pytest.mark.parametrize("sig,sigint_ignored", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_chain_up_stops_anvil_on_sigterm_and_ctrl_c(tmp_path, sig, sigint_ignored):
    """SIGTERM (a service manager) and Ctrl-C both stop anvil; Ctrl-C even when a script started
    `pol chain up &` (a non-interactive shell hands a background job SIGINT ignored)."""
    proc, children = chain_up(tmp_path, sigint_ignored)
    try:
        proc.send_signal(sig)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not wait_gone(children, 10)


def test_chain_up_anvil_dies_with_a_killed_parent(tmp_path):
    proc, children = chain_up(tmp_path)
    proc.kill()  # SIGKILL: no handler runs; only the parent-death signal can end anvil now
    proc.wait(30)
    assert not wait_gone(children, 15)


def test_demo_keep_running_ends_everything_on_sigterm(tmp_path):
    """SIGTERM while the network mines, with --keep-running: anvil, the verifier and the provers
    all end (they used to sit in sessions of their own and survive)."""
    out = tmp_path / "results"
    demo = start_pol(["demo", "--blocks", "1000", "--provers", "2", "--difficulty", "3", "--keep-running", "--out",
                      str(out), "--deployment", str(tmp_path / "d.json"), "--workdir", str(tmp_path / "work")], tmp_path)
    try:
        read_until(demo, "height")  # the table's heading: the whole network is up
        reported = set(json.loads((out / "run.json").read_text())["pids"])
        children = descendants(demo.pid)
        assert reported <= children and len(reported) == 4  # anvil, the verifier, two provers
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(60) == 130
    finally:
        if demo.poll() is None:
            demo.kill()
    assert not wait_gone(children, 15)
