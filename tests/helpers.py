"""Shared helpers for the integration tests: deploy a fresh chain, run a verifier, mine real proofs."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from eth_account import Account

from pol.genesis import Genesis
from pol_chain import deploy_chain
from pol_chain.anvil import ANVIL_DEV_KEYS
from pol_chain.process import spawn, terminate
from pol_core.link import compute_seed
from pol_core.requirements import compute_requirements
from pol_core.tasks import Task
from pol_core.verify import compute_genesis_correct
from pol_core.weights import compute_weights_hash
from prover.faithful import Found, SegmentLog, mine_faithful

KEY = ANVIL_DEV_KEYS[0]
MINER = bytes.fromhex("00000000000000000000000000000000000000aa")


def deploy_fresh(rpc_url: str, task: Task, path: Path, difficulty: int = 2, **kw):
    me = Account.from_key(KEY).address
    genesis = Genesis.for_task(task, compute_genesis_correct(task), me, me, difficulty=difficulty, **kw)
    dep = deploy_chain(rpc_url, KEY, task.name, genesis)
    dep.save(path)
    return dep


def mine_on(task: Task, tip, state=None, seed: int = 0, max_attempts: int = 20000) -> Found:
    """A real proof for `tip` (a pb.Tip), by Algorithm 1 from `state` (default: genesis)."""
    model = task.model_from_state(state or task.genesis_state)
    reqs = compute_requirements(bytes(tip.block_hash), tip.difficulty, task.num_params)
    found = mine_faithful(task, model, reqs, torch.Generator().manual_seed(seed), max_attempts)
    if found is None:
        raise RuntimeError("no proof found")
    return found


def mine_segment_on(task: Task, tip, state, seed: int = 0, max_attempts: int = 20000, redraw: int = 0) -> Found:
    """A real chain-bound proof for `tip` by Algorithm 1 from the tip's W' `state`: the attempts it keeps
    are the segment. The link mixes in anvil's prevrandao, which is seeded by the clock, so R differs from
    run to run; a seed that finds nothing in `max_attempts` is followed by two more."""
    reqs = compute_requirements(compute_seed(bytes(tip.link), redraw), tip.difficulty, task.num_params)
    for s in (seed, seed + 1000, seed + 2000):
        found = mine_faithful(task, task.model_from_state(state), reqs, torch.Generator().manual_seed(s), max_attempts,
                              log=SegmentLog(task), floor=tip.correct, redraw=redraw)
        if found is not None:
            return found
    raise RuntimeError("no proof found")


def submit_segment_found(client, task: Task, tip, found: Found, miner: bytes = MINER):
    return client.submit_segment(task.name, bytes(tip.link), tip.height + 1, found.segment, found.indices, miner,
                                 found.redraw)


def submit_found(client, task: Task, tip, found: Found, miner: bytes = MINER):
    return client.submit(task.name, bytes(tip.block_hash), tip.height + 1, found.indices,
                         compute_weights_hash(found.state), found.state, miner)


@dataclass
class VerifierProcess:
    proc: subprocess.Popen
    port: int

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        terminate(self.proc)


def start_verifier_process(deployment: Path, data_root: Path, *extra: str, timeout: float = 60) -> VerifierProcess:
    log = open(data_root.parent / f"verifier-{time.time_ns()}.log", "w")
    proc = spawn([sys.executable, "-m", "pol_cli.main", "verifier", "serve", "--deployment", str(deployment),
                  "--data-root", str(data_root), "--listen", "127.0.0.1:0", *extra],
                 stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening on port" in line:
            return VerifierProcess(proc, int(line.rsplit(" ", 1)[1]))
        if proc.poll() is not None:
            break
    terminate(proc)
    raise RuntimeError(f"verifier did not start; see {log.name}")


def is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"  # a zombie has exited; only its reaping is missing
    except FileNotFoundError:
        return False


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc (children in their own sessions included)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(") ", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - out
        out |= frontier
    return out


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {p for p in pids if is_alive(p)}
        if not left:
            return left
        time.sleep(0.1)
    return {p for p in pids if is_alive(p)}


def wait_health(stub, want, timeout: float = 5.0, service: str = "pol.v1.Verifier") -> bool:
    """Whether the gRPC health status of `service` becomes `want` within `timeout` (it follows the
    attester's pass, a moment after GetTip's degraded flag)."""
    from grpc_health.v1 import health_pb2

    deadline = time.monotonic() + timeout
    while True:
        if stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status == want:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class RpcFront:
    """A JSON-RPC front for anvil on 127.0.0.1: forwards every request, except that it can stop answering
    (`frozen`: a hung node, connections accepted and nothing comes back) and can refuse the `pending`
    block tag (`refuse_pending`: as some nodes and providers do)."""

    PENDING_METHODS = {"eth_estimateGas", "eth_getBlockByNumber", "eth_call"}

    def __init__(self, upstream: str, refuse_pending: bool = False):
        import http.server
        import json
        import urllib.request

        self.frozen = threading.Event()
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if front.frozen.is_set():
                    time.sleep(60)
                    return
                req = json.loads(body)
                if refuse_pending and isinstance(req, dict) and req.get("method") in front.PENDING_METHODS \
                        and "pending" in req.get("params", []):
                    data = json.dumps({"jsonrpc": "2.0", "id": req.get("id"), "error": {
                        "code": -32602, "message": "pending block is not available"}}).encode()
                else:
                    fwd = urllib.request.Request(upstream, body, {"Content-Type": "application/json"})
                    data = urllib.request.urlopen(fwd, timeout=10).read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
