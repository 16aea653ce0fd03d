"""A local PoL network as child processes: anvil, one verifier, several provers.

Every child is tied to this process (pol_chain.process.spawn): it ends when the network stops, and
the kernel ends it if this process dies without stopping it.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Sequence

from pol_chain.anvil import AnvilProcess, find_free_port
from pol_chain.process import spawn, terminate

Proc = subprocess.Popen[bytes] | subprocess.Popen[str]


@dataclass
class LocalNetwork:
    workdir: Path
    anvil: AnvilProcess | None = None
    verifier: Proc | None = None
    verifier_port: int = 0
    provers: list[Proc] = field(default_factory=list)
    logs: list[IO[str]] = field(default_factory=list)

    def start_anvil(self, port: int | None = None) -> str:
        self.anvil = AnvilProcess(port=port, log_file=self.workdir / "anvil.log").start()
        return self.anvil.url

    def _spawn_pol(self, args: Sequence[str], log_name: str) -> Proc:
        log = open(self.workdir / log_name, "w")
        self.logs.append(log)
        return spawn([sys.executable, "-m", "pol_cli.main", *args], stdout=subprocess.DEVNULL, stderr=log)

    def start_verifier(self, deployment: Path, port: int | None = None, extra: Sequence[str] = ()) -> int:
        self.verifier_port = port or find_free_port()
        self.verifier = self._spawn_pol(["verifier", "serve", "--deployment", str(deployment), "--data-root",
                                         str(self.workdir / "verifier"), "--listen", f"127.0.0.1:{self.verifier_port}",
                                         *extra], "verifier.log")
        return self.verifier_port

    def wait_verifier(self, timeout: float = 60) -> None:
        """Until the verifier answers: gRPC waits for it (wait_for_ready), a few seconds at a time,
        so that a verifier that exited is noticed at once instead of at the deadline."""
        from pol.client import VerifierClient, VerifierUnavailable

        with VerifierClient(f"127.0.0.1:{self.verifier_port}") as client:
            for _ in range(max(1, int(timeout / 2))):
                if self.verifier is None or self.verifier.poll() is not None:
                    raise ChildProcessError(f"the verifier exited; see {self.workdir / 'verifier.log'}")
                try:
                    client.get_tip(timeout=2)
                    return
                except VerifierUnavailable:
                    continue
        raise TimeoutError(f"the verifier did not answer within {timeout}s; see {self.workdir / 'verifier.log'}")

    def start_prover(self, i: int, miner: str, extra: Sequence[str] = ()) -> None:
        self.provers.append(self._spawn_pol(["mine", "--verifier", f"127.0.0.1:{self.verifier_port}", "--miner", miner,
                                             "--seed", str(1000 + i), *extra], f"prover-{i}.log"))

    def stop_provers(self) -> None:
        for p in self.provers:
            terminate(p, signal.SIGINT)  # a prover finishes a submission in flight

    def stop(self) -> None:
        self.stop_provers()
        terminate(self.verifier)
        if self.anvil:
            self.anvil.stop()
        for log in self.logs:
            log.close()

    def pids(self) -> list[int]:
        procs = [*self.provers, self.verifier, self.anvil.proc if self.anvil else None]
        return [p.pid for p in procs if p is not None]
