"""A local PoL network as child processes: anvil, one verifier or a quorum of them, several provers.

Every child is tied to this process (pol_chain.process.spawn): it ends when the network stops, and
the kernel ends it if this process dies without stopping it.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Mapping, Sequence

from pol_chain.anvil import AnvilProcess, find_free_port
from pol_chain.process import spawn, terminate

Proc = subprocess.Popen[bytes] | subprocess.Popen[str]
KEY_ENV = "POL_VERIFIER_KEY"  # each verifier's key reaches it in its own environment, never on a command line


@dataclass
class LocalNetwork:
    workdir: Path
    anvil: AnvilProcess | None = None
    verifiers: list[Proc] = field(default_factory=list)
    verifier_ports: list[int] = field(default_factory=list)
    provers: list[Proc] = field(default_factory=list)
    logs: list[IO[str]] = field(default_factory=list)

    def start_anvil(self, port: int | None = None) -> str:
        self.anvil = AnvilProcess(port=port, log_file=self.workdir / "anvil.log").start()
        return self.anvil.url

    def _spawn_pol(self, args: Sequence[str], log_name: str, env: Mapping[str, str] | None = None) -> Proc:
        log = open(self.workdir / log_name, "w")
        self.logs.append(log)
        return spawn([sys.executable, "-m", "pol_cli.main", *args], stdout=subprocess.DEVNULL, stderr=log, env=env)

    def start_verifier(self, deployment: Path, port: int | None = None, extra: Sequence[str] = ()) -> int:
        """The one verifier of a single-attester chain (anvil's first dev key, the deployer's)."""
        self.verifier_ports = [port or find_free_port()]
        self.verifiers = [self._spawn_pol(["verifier", "serve", "--deployment", str(deployment), "--data-root",
                                           str(self.workdir / "verifier"), "--listen",
                                           f"127.0.0.1:{self.verifier_ports[0]}", *extra], "verifier.log")]
        return self.verifier_ports[0]

    def start_quorum(self, deployment: Path, keys: Sequence[str], base_port: int | None = None,
                     extra: Sequence[str] = ()) -> list[int]:
        """One verifier per key, each with its own journal and model store and the others as peers."""
        n = len(keys)
        self.verifier_ports = [base_port + i for i in range(n)] if base_port else [find_free_port() for _ in keys]
        addrs = [f"127.0.0.1:{p}" for p in self.verifier_ports]
        for i, key in enumerate(keys):
            peers = ",".join(a for j, a in enumerate(addrs) if j != i)
            self.verifiers.append(self._spawn_pol(
                ["verifier", "serve", "--deployment", str(deployment), "--data-root", str(self.workdir / f"verifier-{i}"),
                 "--listen", addrs[i], "--peers", peers, "--key-env", KEY_ENV, *extra],
                f"verifier-{i}.log", env={KEY_ENV: key}))
        return self.verifier_ports

    def wait_verifiers(self, timeout: float = 60) -> None:
        """Until every verifier answers: gRPC waits for each (wait_for_ready), a few seconds at a time,
        so that a verifier that exited is noticed at once instead of at the deadline."""
        from pol.client import VerifierClient, VerifierUnavailable

        for i, port in enumerate(self.verifier_ports):
            log = self.workdir / (f"verifier-{i}.log" if len(self.verifiers) > 1 else "verifier.log")
            with VerifierClient(f"127.0.0.1:{port}") as client:
                for _ in range(max(1, int(timeout / 2))):
                    if self.verifiers[i].poll() is not None:
                        raise ChildProcessError(f"a verifier exited; see {log}")
                    try:
                        client.get_tip(timeout=2)
                        break
                    except VerifierUnavailable:
                        continue
                else:
                    raise TimeoutError(f"a verifier did not answer within {timeout}s; see {log}")

    def start_prover(self, i: int, miner: str, extra: Sequence[str] = ()) -> None:
        """Prover i submits to verifier i mod n: a quorum's provers spread over its members."""
        port = self.verifier_ports[i % len(self.verifier_ports)]
        self.provers.append(self._spawn_pol(["mine", "--verifier", f"127.0.0.1:{port}", "--miner", miner,
                                             "--seed", str(1000 + i), *extra], f"prover-{i}.log"))

    def stop_provers(self) -> None:
        for p in self.provers:
            terminate(p, signal.SIGINT)  # a prover finishes a submission in flight

    def stop(self) -> None:
        self.stop_provers()
        for v in self.verifiers:
            terminate(v)
        if self.anvil:
            self.anvil.stop()
        for log in self.logs:
            log.close()

    def pids(self) -> list[int]:
        procs = [*self.provers, *self.verifiers, self.anvil.proc if self.anvil else None]
        return [p.pid for p in procs if p is not None]
