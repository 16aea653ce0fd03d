"""A local PoL network as child processes: anvil, one verifier, several provers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pol_chain.anvil import AnvilProcess, find_free_port


@dataclass
class LocalNetwork:
    workdir: Path
    anvil: AnvilProcess | None = None
    verifier: subprocess.Popen | None = None
    verifier_port: int = 0
    provers: list[subprocess.Popen] = field(default_factory=list)
    logs: list = field(default_factory=list)

    def start_anvil(self, port: int | None = None) -> str:
        self.anvil = AnvilProcess(port=port, log_file=self.workdir / "anvil.log").start()
        return self.anvil.url

    def _spawn(self, args: list[str], log_name: str, **kw) -> subprocess.Popen:
        log = open(self.workdir / log_name, "w")
        self.logs.append(log)
        # Each child leads its own process group, so teardown reaches its threads and children.
        return subprocess.Popen([sys.executable, "-m", "pol_cli.main", *args], stderr=log, start_new_session=True, **kw)

    def start_verifier(self, deployment: Path, port: int | None = None, extra: list[str] = ()) -> int:
        self.verifier_port = port or find_free_port()
        self.verifier = self._spawn(["verifier", "serve", "--deployment", str(deployment), "--data-root",
                                     str(self.workdir / "verifier"), "--listen", f"127.0.0.1:{self.verifier_port}",
                                     *extra], "verifier.log", stdout=subprocess.DEVNULL)
        return self.verifier_port

    def wait_verifier(self, timeout: float = 60) -> None:
        from prover.client import VerifierClient

        client = VerifierClient(f"127.0.0.1:{self.verifier_port}")
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.verifier.poll() is not None:
                    raise RuntimeError(f"verifier exited; see {self.workdir / 'verifier.log'}")
                try:
                    client.get_tip(timeout=1)
                    return
                except Exception:  # noqa: BLE001 - not up yet
                    time.sleep(0.2)
            raise TimeoutError("verifier did not answer")
        finally:
            client.close()

    def start_prover(self, i: int, miner: str, extra: list[str] = ()) -> None:
        self.provers.append(self._spawn(["mine", "--verifier", f"127.0.0.1:{self.verifier_port}", "--miner", miner,
                                         "--seed", str(1000 + i), *extra], f"prover-{i}.log",
                                        stdout=subprocess.DEVNULL))

    @staticmethod
    def _terminate(proc: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 15) -> None:
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass

    def stop_provers(self) -> None:
        for p in self.provers:
            self._terminate(p, signal.SIGINT)

    def stop(self) -> None:
        self.stop_provers()
        self._terminate(self.verifier)
        if self.anvil:
            self.anvil.stop()
        for log in self.logs:
            log.close()

    def pids(self) -> list[int]:
        procs = [*self.provers, self.verifier, self.anvil.proc if self.anvil else None]
        return [p.pid for p in procs if p is not None]
