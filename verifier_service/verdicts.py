"""Verdicts in warm worker processes, so that the service's event loop never waits for the
interpreter lock behind a verification.

A verdict (hashing, the update step, the checks, and for digits-cnn the whole test-set evaluation) is
mostly Python and torch calls that hold the interpreter lock in short slices; run on a thread of the
serving process, it makes every RPC wait behind it. Each worker here is a separate process that
runs the same rule (pol_core.verify.compute_verdict, pol_core.chainbound.compute_chain_bound_verdict),
with the same set-up as the verifier: pinned CPU dispatch before its first tensor operation,
deterministic mode, one thread. It loads the task once, proves at start-up that its settings and its
task are the node's, and stays warm. States cross the process boundary as safetensors bytes, which
carry every bit.

Evaluation in a worker is in-process (the serial code): the factory uses this pool only where the
node's evaluator is in-process too (the whole test set is one eval batch, as for digits-cnn, or
`eval_workers = 0`). With a sharded evaluator the verdict's cost is the evaluation, which already runs
in other processes while the verify thread waits without the lock, so the verdict stays in the node.

The node keeps the accept step (the duplicate check, the journal, the lock): a worker only computes.
"""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Mapping

import multiprocessing as mp

import torch

from pol.wire import decode_state, encode_state
from pol_core.chainbound import SegmentProof, TipContext, compute_chain_bound_verdict
from pol_core.evaluation import KnownCount
from pol_core.header import Header
from pol_core.tasks import Task
from pol_core.types import Difficulty, Hash32
from pol_core.verify import Proof, Verdict, compute_verdict

from .evaluation import EvaluationError, WorkerMismatch

log = logging.getLogger("pol.verifier")

WORKER_NICE = 5  # below the serving process: a verdict yields the core to the event loop's wake-ups


@dataclass(frozen=True)
class TaskRef:
    """How a worker loads the node's task: load_task's arguments (the pool checks the spec hash)."""

    name: str
    data_dir: str | None
    test_limit: int | None
    rules: str


@dataclass(frozen=True)
class WireVerdict:
    """A Verdict with its states as safetensors bytes (what crosses the process boundary)."""

    header: Header
    block_hash: Hash32
    new_state: bytes
    timings: dict[str, float]
    state: bytes | None
    settings: str  # the worker's settings and task (describe()), checked by the pool on every verdict


# ── in the worker ──

_task: Task | None = None
_settings = ""


def describe(task: Task) -> str:
    """The settings this process computes with (pinned dispatch, threads, torch) and its task."""
    from .evaluation.shard import describe_settings

    return f"{sorted(describe_settings().items())} task {task.spec_hash.hex()}"


def _init_worker(ref: TaskRef, allow_torch_version: bool) -> None:
    global _task, _settings
    from .evaluation.worker import setup_process

    setup_process(allow_torch_version)  # before this process's first tensor operation
    try:
        os.nice(WORKER_NICE)
    except OSError:  # not permitted here: the verdict is the same, only scheduled at par
        pass
    from pol_core.tasks import load_task

    _task = load_task(ref.name, ref.data_dir, test_limit=ref.test_limit, rules=ref.rules)
    _settings = describe(_task)


def _loaded() -> Task:
    # The initializer loads the task before any call; a call without it is a broken worker.
    if _task is None:
        raise EvaluationError("verdict worker has no task loaded")
    return _task


def _describe() -> str:
    _loaded()
    return _settings


def _to_wire(v: Verdict) -> WireVerdict:
    return WireVerdict(v.header, v.block_hash, encode_state(v.new_state), v.timings,
                       encode_state(v.state) if v.state is not None else None, _settings)


def _paper(parent: Header, link: Hash32, difficulty: Difficulty, proof: Proof, state: bytes,
           known: KnownCount | None) -> WireVerdict:
    task = _loaded()
    proof = Proof(proof.parent_hash, proof.height, proof.indices, proof.weights_hash,
                  decode_state(state, task.genesis_state.keys()), proof.miner)
    return _to_wire(compute_verdict(task, parent, link, difficulty, proof, known_before=known))


def _chain_bound(tip: TipContext, parent_state: bytes, proof: SegmentProof) -> WireVerdict:
    task = _loaded()
    state = decode_state(parent_state, task.genesis_state.keys())
    return _to_wire(compute_chain_bound_verdict(task, tip, state, proof))


# ── in the node ──

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
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._ready = False
        self._closed = False
        self.settings = describe(task)  # what every worker must report

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise EvaluationError("the verdict pool is closed")
            if self._pool is None:
                # spawn: a fresh interpreter pins its own dispatch; a fork would inherit this process's
                # threads (gRPC's among them) mid-flight.
                self._pool = ProcessPoolExecutor(self.workers, mp.get_context("spawn"), initializer=_init_worker,
                                                 initargs=(self.ref, self.allow_torch_version))
                self._ready = False
            return self._pool

    def prepare(self) -> None:
        """Start the workers now rather than on the first proof, and check them (WorkerMismatch)."""
        pool = self._executor()
        if self._ready:
            return
        # The pool starts a process for every call queued while none is idle: this warms all of them.
        for theirs in [f.result() for f in [pool.submit(_describe) for _ in range(self.workers)]]:
            self._check(theirs)
        self._ready = True

    def _check(self, theirs: str) -> None:
        # A worker with other kernels or another task would attest verdicts no one else reproduces.
        if theirs != self.settings:
            raise WorkerMismatch(f"a verdict worker computes with {theirs}, this process with {self.settings}")

    def _run(self, fn: Any, *args: Any) -> Verdict:
        if not self._ready:
            self.prepare()
        pool = self._executor()
        try:
            fut: Future[WireVerdict] = pool.submit(fn, *args)
            w = fut.result()
        except BrokenProcessPool as e:
            # A worker died (killed, or out of memory): the proof may be valid, so it is refused as a
            # verifier failure the miner retries, and the next call starts fresh workers.
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise EvaluationError(f"a verdict worker died ({e}); retry") from e
        self._check(w.settings)  # every verdict, not only at start-up: a replaced worker is checked too
        state = decode_state(w.state, self.order) if w.state is not None else None
        return Verdict(w.header, w.block_hash, decode_state(w.new_state, self.order), w.timings, state)

    def paper(self, parent: Header, link: Hash32, difficulty: Difficulty, proof: Proof,
              known: KnownCount | None) -> Verdict:
        """compute_verdict(task, parent, link, difficulty, proof, known_before=known), in a worker."""
        bare = Proof(proof.parent_hash, proof.height, proof.indices, proof.weights_hash, {}, proof.miner)
        return self._run(_paper, parent, link, difficulty, bare, encode_state(proof.state), known)

    def chain_bound(self, tip: TipContext, parent_state: Mapping[str, torch.Tensor], proof: SegmentProof) -> Verdict:
        """compute_chain_bound_verdict(task, tip, parent_state, proof), in a worker."""
        return self._run(_chain_bound, tip, encode_state(parent_state), proof)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


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
