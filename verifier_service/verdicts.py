"""Verdicts in warm worker processes, so that the service's event loop never waits for the
interpreter lock behind a verification.

A verdict (hashing, the update step, the checks, and for digits-cnn the whole test-set evaluation) is
mostly Python and torch calls that hold the interpreter lock in short slices; run on a thread of the
serving process, it makes every RPC wait behind it. Each worker here is a separate process that
runs the same rule (pol_core.verify.compute_verdict, pol_core.chainbound.compute_chain_bound_verdict),
with the same set-up as the verifier: pinned CPU dispatch before its first tensor operation,
deterministic mode, one thread. It loads the task once, and every verdict it returns names its
settings and task, which must be the node's; it stays warm. States cross the process boundary as safetensors bytes, which
carry every bit.

Evaluation in a worker is in-process (the serial code): the factory uses this pool only where the
node's evaluator is in-process too (the whole test set is one eval batch, as for digits-cnn, or
`eval_workers = 0`). With a sharded evaluator the verdict's cost is the evaluation, which already runs
in other processes while the verify thread waits without the lock, so the verdict stays in the node.

The node keeps the accept step (the duplicate check, the journal, the lock): a worker only computes.

Workers are `python -m verifier_service.verdicts` processes, started with the pool (they import torch
while the node gets ready), fed over their stdin and answering on their stdout: a 4-byte length, then
a pickle. Both ends are this module; a proof's weights travel as safetensors bytes inside it. A worker
exits at the end of its stdin, so it never outlives its verifier.
"""
from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Mapping, cast

import torch

from pol.wire import decode_state, encode_state
from pol_core.chainbound import SegmentProof, TipContext, compute_chain_bound_verdict
from pol_core.evaluation import KnownCount
from pol_core.header import Header
from pol_core.tasks import Task
from pol_core.types import Difficulty, Hash32
from pol_core.verify import Proof, Verdict, compute_verdict

from .evaluation import EvaluationError, WorkerMismatch

PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True)
class TaskRef:
    """How a worker loads the node's task: load_task's arguments (the pool checks the spec hash)."""

    name: str
    data_dir: str | None
    test_limit: int | None
    rules: str

    def argv(self) -> list[str]:
        return ([self.name, self.rules] + (["--data-dir", self.data_dir] if self.data_dir else [])
                + (["--test-limit", str(self.test_limit)] if self.test_limit is not None else []))


@dataclass(frozen=True)
class WireVerdict:
    """A Verdict with its states as safetensors bytes (what crosses the process boundary)."""

    header: Header
    block_hash: Hash32
    new_state: bytes
    timings: dict[str, float]
    state: bytes | None
    settings: str  # the worker's settings and task (describe()), checked by the pool on every verdict


def describe(task: Task) -> str:
    """The settings this process computes with (pinned dispatch, threads, torch) and its task."""
    from .evaluation.shard import describe_settings

    return f"{sorted(describe_settings().items())} task {task.spec_hash.hex()}"


def write_frame(out: IO[bytes], obj: Any) -> None:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(len(body).to_bytes(4, "big") + body)
    out.flush()


def read_frame(inp: IO[bytes]) -> Any:
    """The next object, or raises EOFError where the other end is gone."""
    head = inp.read(4)
    if len(head) < 4:
        raise EOFError("end of stream")
    n = int.from_bytes(head, "big")
    body = inp.read(n)
    if len(body) < n:
        raise EOFError("end of stream")
    return pickle.loads(body)


# ── in the worker ──

def _to_wire(v: Verdict, settings: str) -> WireVerdict:
    return WireVerdict(v.header, v.block_hash, encode_state(v.new_state), v.timings,
                       encode_state(v.state) if v.state is not None else None, settings)


def compute_wire_verdict(task: Task, settings: str, kind: str, args: tuple[Any, ...]) -> WireVerdict:
    """One request: the paper or the chain-bound verdict, with the weights decoded here."""
    order = task.genesis_state.keys()
    if kind == "paper":
        parent, link, difficulty, bare, blob, known = args
        proof = Proof(bare.parent_hash, bare.height, bare.indices, bare.weights_hash, decode_state(blob, order), bare.miner)
        return _to_wire(compute_verdict(task, parent, link, difficulty, proof, known_before=known), settings)
    if kind == "chain-bound":
        tip, parent_blob, segment_proof = args
        return _to_wire(compute_chain_bound_verdict(task, tip, decode_state(parent_blob, order), segment_proof), settings)
    raise ValueError(f"unknown verdict kind {kind!r}")


def worker_main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m verifier_service.verdicts")
    ap.add_argument("task")
    ap.add_argument("rules")
    ap.add_argument("--data-dir")
    ap.add_argument("--test-limit", type=int)
    ap.add_argument("--allow-torch-version", action="store_true")
    args = ap.parse_args(argv)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints (C libraries included) go to stderr, never into the frames
    inp = os.fdopen(0, "rb")
    from .evaluation.worker import setup_process

    setup_process(args.allow_torch_version)  # before this process's first tensor operation
    # Not niced: at a lower priority the verdicts starve on a busy machine (BENCHMARKS, verifier under load).
    from pol_core.tasks import load_task

    task = load_task(args.task, args.data_dir, test_limit=args.test_limit, rules=args.rules)
    settings = describe(task)
    write_frame(out, settings)
    while True:
        try:
            kind, call = read_frame(inp)
        except EOFError:
            return 0  # the verifier is gone
        try:
            reply: tuple[str, Any] = ("ok", compute_wire_verdict(task, settings, kind, call))
        except Exception as e:  # noqa: BLE001 - a refusal (or a bug) goes back to the node, the worker lives on
            try:
                pickle.dumps(e)
                reply = ("error", e)
            except Exception:  # noqa: BLE001 - an exception that cannot cross: its text can
                reply = ("error", EvaluationError(f"{type(e).__name__}: {e}"))
        write_frame(out, reply)


# ── in the node ──

class _Worker:
    """One worker process, used by one verdict at a time."""

    def __init__(self, ref: TaskRef, allow_torch_version: bool):
        env = dict(os.environ)
        # The worker must run this very code, whatever the caller's sys.path tricks.
        env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
        argv = [sys.executable, "-m", "verifier_service.verdicts", *ref.argv()]
        self.proc = subprocess.Popen(argv + ["--allow-torch-version"] * allow_torch_version, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.stdin = cast(IO[bytes], self.proc.stdin)  # both pipes, as asked for above
        self.stdout = cast(IO[bytes], self.proc.stdout)
        self.settings: str | None = None  # its ready message, read on first use

    def call(self, request: tuple[str, tuple[Any, ...]]) -> tuple[str, Any]:
        write_frame(self.stdin, request)
        reply: tuple[str, Any] = read_frame(self.stdout)
        return reply

    def ready(self) -> str:
        if self.settings is None:
            self.settings = str(read_frame(self.stdout))
        return self.settings

    def stop(self) -> None:
        try:
            self.stdin.close()  # end of stream: the worker exits
        except OSError:
            pass
        try:
            self.proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class VerdictPool:
    """`workers` warm processes computing verdicts for one task; safe to call from many threads."""

    def __init__(self, task: Task, ref: TaskRef, workers: int, allow_torch_version: bool = False):
        # No worker means no verdict at all: a configuration mistake, not a request for in-process.
        if workers < 1:
            raise ValueError(f"verdict workers must be >= 1, got {workers}")
        self.task = task
        self.ref = ref
        self.workers = workers
        self.allow_torch_version = allow_torch_version
        self.order = list(task.genesis_state.keys())
        self.settings = ""  # what every worker must report: this process's, once the node has set it up
        self._lock = threading.Lock()
        self._closed = False
        # Started now: each imports torch and loads the task while the node gets ready.
        self._all = [_Worker(ref, allow_torch_version) for _ in range(workers)]
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for w in self._all:
            self._idle.put(w)

    def _check(self, theirs: str) -> None:
        if not self.settings:
            self.settings = describe(self.task)  # after the node's set-up (deterministic mode), not before
        # A worker with other kernels or another task would attest verdicts no one else reproduces.
        if theirs != self.settings:
            raise WorkerMismatch(f"a verdict worker computes with {theirs}, this process with {self.settings}")

    def prepare(self) -> None:
        """Wait until every worker has started, and check each (WorkerMismatch)."""
        taken = [self._idle.get() for _ in range(self.workers)]
        try:
            for w in taken:
                self._check(self._ready(w))
        finally:
            for w in taken:
                self._idle.put(w)

    def _ready(self, w: _Worker) -> str:
        try:
            return w.ready()
        except (EOFError, OSError) as e:
            raise EvaluationError(f"a verdict worker did not start ({e}); see the verifier's log") from e

    def _replace(self, w: _Worker) -> _Worker:
        w.stop()
        with self._lock:
            if self._closed:
                return w
            fresh = _Worker(self.ref, self.allow_torch_version)
            self._all = [fresh if x is w else x for x in self._all]
            return fresh

    def _run(self, request: tuple[str, tuple[Any, ...]]) -> Verdict:
        if self._closed:
            raise EvaluationError("the verdict pool is closed")
        w = self._idle.get()
        try:
            try:
                theirs = w.ready()
            except (EOFError, OSError) as e:
                w = self._replace(w)
                raise EvaluationError(f"a verdict worker did not start ({e}); retry") from e
            self._check(theirs)  # every worker before its first verdict, replacements too
            try:
                status, value = w.call(request)
            except (EOFError, OSError, pickle.UnpicklingError) as e:
                # A worker died (killed, or out of memory): the proof may be valid, so it is refused as
                # a verifier failure the miner retries, and a fresh worker takes the dead one's place.
                w = self._replace(w)
                raise EvaluationError(f"a verdict worker died ({type(e).__name__}: {e}); retry") from e
        finally:
            self._idle.put(w)
        if status != "ok":
            raise value  # the verdict's refusal, exactly as compute_verdict raised it
        wv: WireVerdict = value
        self._check(wv.settings)
        state = decode_state(wv.state, self.order) if wv.state is not None else None
        return Verdict(wv.header, wv.block_hash, decode_state(wv.new_state, self.order), wv.timings, state)

    def paper(self, parent: Header, link: Hash32, difficulty: Difficulty, proof: Proof,
              known: KnownCount | None) -> Verdict:
        """compute_verdict(task, parent, link, difficulty, proof, known_before=known), in a worker."""
        bare = Proof(proof.parent_hash, proof.height, proof.indices, proof.weights_hash, {}, proof.miner)
        return self._run(("paper", (parent, link, difficulty, bare, encode_state(proof.state), known)))

    def chain_bound(self, tip: TipContext, parent_state: Mapping[str, torch.Tensor], proof: SegmentProof) -> Verdict:
        """compute_chain_bound_verdict(task, tip, parent_state, proof), in a worker."""
        return self._run(("chain-bound", (tip, encode_state(parent_state), proof)))

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._all]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._all)
        for w in workers:
            w.stop()


def make_verdict_pool(workers: int | None, task: Task, ref: TaskRef, in_process_evaluation: bool,
                      default: int) -> VerdictPool | None:
    """The node's verdict pool: `workers` processes (None: `default`), or None (verdicts on the verify
    thread) for 0 and wherever evaluation is sharded to other processes already (see the module note)."""
    # A negative count is a configuration mistake, not a request for the default.
    if workers is not None and workers < 0:
        raise ValueError(f"verdict workers must be >= 0, got {workers}")
    if workers == 0 or not in_process_evaluation:
        return None
    return VerdictPool(task, ref, workers or default)


if __name__ == "__main__":
    # From the package, not from __main__: what the worker pickles must name verifier_service.verdicts.
    from verifier_service.verdicts import worker_main as main

    sys.exit(main(sys.argv[1:]))
