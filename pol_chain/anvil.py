"""Run anvil as a child process: find it, a free port, wait until it answers, clean teardown."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from .process import spawn, terminate

# A checkout (not an installed wheel) has the npm-installed Foundry beside the packages.
CHECKOUT_ROOT = Path(__file__).resolve().parent.parent
# Anvil's well-known dev keys (its default mnemonic's first ten accounts, each funded); only ever used
# for the local default chain: key 0 deploys and attests, a local quorum's verifiers take 0..n-1.
ANVIL_DEV_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)


class ToolNotFound(FileNotFoundError):
    """A Foundry binary (anvil) is neither in node_modules nor on PATH."""


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_tool(name: str) -> str:
    """./node_modules/.bin, then the checkout's node_modules/.bin, then PATH."""
    for base in (Path.cwd(), CHECKOUT_ROOT):
        local = base / "node_modules" / ".bin" / name
        if local.exists():
            return str(local)
    found = shutil.which(name)
    if found is None:
        raise ToolNotFound(f"{name} not found in ./node_modules/.bin or on PATH: install Foundry "
                           f"(npm install @foundry-rs/{name}; in a checkout ./run.sh setup does it)")
    return found


def is_answering(url: str, timeout: float = 0.5) -> bool:
    from web3 import Web3

    return bool(Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout})).is_connected())


class AnvilProcess:
    """`with AnvilProcess() as a: a.url` starts anvil on a free port and stops it on exit."""

    def __init__(self, port: int | None = None, state_file: str | Path | None = None, block_time: float | None = None,
                 log_file: str | Path | None = None, detached: bool = False, state_interval: int = 1):
        self.port = port or find_free_port()
        self.state_file = Path(state_file) if state_file else None
        self.state_interval = state_interval  # seconds between state dumps
        self.block_time = block_time
        self.log_file = Path(log_file) if log_file else None
        self.detached = detached  # outlives this process (pol chain up --detach)
        self.proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "AnvilProcess":
        cmd = [find_tool("anvil"), "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        if self.state_file:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            # anvil writes --state only on a clean exit; the interval dump makes a crash lose at most
            # that many seconds of blocks instead of every block since the start.
            cmd += ["--state", str(self.state_file), "--state-interval", str(self.state_interval)]
        if self.block_time:
            cmd += ["--block-time", str(self.block_time)]
        log = open(self.log_file, "ab") if self.log_file else None
        try:
            self.proc = spawn(cmd, stdout=log or subprocess.DEVNULL, detached=self.detached)
        finally:
            if log:
                log.close()  # the child holds its own descriptor
        # Readiness is polled: anvil has no readiness signal, and its start takes milliseconds.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ChildProcessError(f"anvil exited with code {self.proc.returncode} (is port {self.port} in use?)")
            if is_answering(self.url):
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"anvil did not answer on {self.url} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        # SIGTERM lets anvil write its --state file before it exits.
        terminate(self.proc, timeout=timeout)

    def __enter__(self) -> "AnvilProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
