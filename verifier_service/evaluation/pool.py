"""Sharded evaluation on local worker processes: a warm pool, one worker per core by default.

Workers are forked by a zygote process (.worker) that pinned the CPU dispatch, ran the verifier's
set-up and imported torch once. The pool puts the task's normalised test set in shared memory once
per task, and each proof's states (W' and W) in shared memory once per proof, in a fixed layout
(.layout).
Workers map both, keep their own models, and answer one shard (a run of whole eval batches) at a
time; the pool hands out shards as workers become free and sums the integer counts.

A worker that dies is replaced; its shard goes to another worker. A shard that loses its worker
`max_attempts` times fails the evaluation with ShardFailed. No count is ever returned unless every
shard of every state was answered by a worker whose settings and canary matched this process.
"""
from __future__ import annotations

import atexit
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from pol_core.step import RobustCount
from pol_core.tasks import Task
from pol_core.types import CorrectCount
from pol_core.weights import StateDict

from . import EvaluationError, ShardFailed, WorkerMismatch, default_workers, wire
from .layout import StateLayout, align
from .shard import (ShardKey, builder_path, check_settings, compute_canary, compute_shards, describe_settings,
                    sum_counts)

log = logging.getLogger("pol.eval")

MODEL_SLOTS = 2  # a verdict evaluates at most two states: W' and W
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass
class _Proc:
    """A worker as the pool sees it: its socket, and what it is doing."""

    sock: socket.socket
    fd: int
    pid: int = 0  # known from its `ready` message
    decoder: wire.Decoder = field(default_factory=wire.Decoder)
    state: str = "starting"  # starting -> ready -> binding -> idle <-> busy
    spec: str | None = None  # the task the worker is bound to
    job: tuple[int, int, ShardKey] | None = None  # (id, generation, shard) in flight


@dataclass
class _Binding:
    """One task's shared memory: the test set; MODEL_SLOTS state slots and genesis, in a fixed layout."""

    spec: str
    n: int
    eval_batch: int
    layout: StateLayout
    slot_offsets: list[int]
    test_shm: SharedMemory
    model_shm: SharedMemory
    canary: str
    message: dict[str, Any]

    def close(self) -> None:
        for shm in (self.test_shm, self.model_shm):
            shm.close()
            shm.unlink()


@dataclass
class _Run:
    generation: int
    pending: deque[ShardKey]
    results: dict[ShardKey, RobustCount] = field(default_factory=dict)
    attempts: Counter[ShardKey] = field(default_factory=Counter)


def create_binding(task: Task) -> _Binding:
    x = task.test_x.contiguous()  # (N, C, H, W) float32, exactly what the serial code evaluates
    y = task.test_y.contiguous()  # (N,) int64
    y_offset = align(x.numel() * 4)
    test_shm = SharedMemory(create=True, size=y_offset + y.numel() * 8)
    torch.frombuffer(test_shm.buf, dtype=torch.float32, count=x.numel()).copy_(x.reshape(-1))
    torch.frombuffer(test_shm.buf, dtype=torch.int64, count=y.numel(), offset=y_offset).copy_(y)
    layout = StateLayout.of(task.genesis_state)
    slot_bytes = align(layout.nbytes, 4096)
    offsets = [i * slot_bytes for i in range(MODEL_SLOTS)]
    # After the proofs' slots, the genesis state, never overwritten: a worker that binds late still
    # computes its canary on genesis.
    model_shm = SharedMemory(create=True, size=(MODEL_SLOTS + 1) * slot_bytes)
    layout.write(task.genesis_state, model_shm.buf, MODEL_SLOTS * slot_bytes)
    spec = task.spec_hash.hex()
    message = {
        "op": "bind", "spec": spec, "build": builder_path(task.builder),
        "eval_batch": task.config.eval_batch, "logit_margin": task.config.logit_margin,
        "test": {"shm": test_shm.name, "nbytes": test_shm.size, "x_shape": list(x.shape), "y_offset": y_offset},
        "models": {"shm": model_shm.name, "nbytes": model_shm.size, "slots": offsets,
                   "genesis": MODEL_SLOTS * slot_bytes, "layout": layout.to_json()},
    }
    canary = compute_canary(task.new_model(), task.test_x, task.config.eval_batch)
    return _Binding(spec, int(x.shape[0]), task.config.eval_batch, layout, offsets, test_shm, model_shm, canary, message)


class LocalPool:
    """An Evaluator (pol_core.evaluation) backed by warm local worker processes."""

    def __init__(self, workers: int | None = None, max_attempts: int = 3, start_timeout_s: float = 120.0,
                 batches_per_shard: int = 1, allow_torch_version: bool = False):
        self.size = default_workers() if workers is None else workers
        # A pool without workers could never answer.
        if self.size < 1:
            raise ValueError(f"a local pool needs at least one worker, got {workers}")
        self.max_attempts = max_attempts
        self.start_timeout_s = start_timeout_s
        self.batches_per_shard = batches_per_shard
        self.allow_torch_version = allow_torch_version  # benchmarks only: see worker.setup_process
        self.on_dispatch: Callable[[int, ShardKey], None] | None = None  # fault injection in tests
        self.replaced = 0  # workers lost and replaced, for logs and tests
        self.worker_settings: list[dict[str, Any]] = []  # what each accepted worker reported, for logs and tests
        self.cpu_s = 0.0  # CPU seconds the workers spent on shards (loading models included)
        self._lock = threading.Lock()
        self._sel = selectors.DefaultSelector()
        self._procs: dict[int, _Proc] = {}  # by the fd of the worker's socket
        self._zygote: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None  # to the zygote: one message per worker to fork
        self._binding: _Binding | None = None
        self._run: _Run | None = None
        self._here = describe_settings()
        self._generation = 0
        self._next_id = 0
        self._start_failures = 0
        self._closed = False
        self._closing = threading.Event()  # set before close() waits for the lock
        with self._lock:
            self._fill()
        atexit.register(self.close)

    # ── the Evaluator interface ──

    def __call__(self, task: Task, states: Sequence[StateDict]) -> list[CorrectCount]:
        return [CorrectCount(c.correct) for c in self.robust_counts(task, states)]

    def robust_counts(self, task: Task, states: Sequence[StateDict]) -> list[RobustCount]:
        """compute_robust_count of every state on the whole test set, with the task's logit margin."""
        with self._lock:
            # A closed pool has no workers left to ask.
            if self._closed:
                raise EvaluationError("the evaluation pool is closed")
            b = self._bind(task)
            shards = compute_shards(b.n, b.eval_batch, self.batches_per_shard)
            out: list[RobustCount] = []
            for first in range(0, len(states), MODEL_SLOTS):
                group = states[first : first + MODEL_SLOTS]
                self._generation += 1
                for slot, state in enumerate(group):
                    b.layout.write(state, b.model_shm.buf, b.slot_offsets[slot])
                keys = [ShardKey(slot, a, z) for slot in range(len(group)) for a, z in shards]
                results = self._evaluate(keys)
                out += [sum_counts([results[ShardKey(slot, a, z)] for a, z in shards]) for slot in range(len(group))]
            return out

    def prepare(self, task: Task, timeout_s: float | None = None) -> None:
        """Start and bind every worker for `task` now, so the first proof does not wait for them."""
        with self._lock:
            self._bind(task)
            deadline = time.monotonic() + (timeout_s or self.start_timeout_s)
            while time.monotonic() < deadline and not self._closing.is_set():
                self._fill()
                self._dispatch()
                if all(p.state == "idle" for p in self._procs.values()):
                    return
                self._pump(0.5)
            if not self._closing.is_set():
                raise EvaluationError(f"evaluation workers not ready after {timeout_s or self.start_timeout_s:.0f}s")

    def worker_pids(self) -> list[int]:
        """The workers that have said ready (a starting worker has no pid here yet)."""
        with self._lock:
            return [p.pid for p in self._procs.values() if p.pid]

    @property
    def zygote_pid(self) -> int | None:
        return self._zygote.pid if self._zygote is not None else None

    def close(self) -> None:
        """Stop every worker (politely, then by force) and free the shared memory."""
        self._closing.set()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            atexit.unregister(self.close)
            for p in list(self._procs.values()):
                if not self._send(p, {"op": "exit"}):
                    self._forget(p, kill=True)
            self._stop_zygote()
            # Workers exit at `exit` or when their socket closes; the end of stream says they have.
            deadline = time.monotonic() + 2.0
            while self._procs and time.monotonic() < deadline:
                for key, _ in self._sel.select(0.1):
                    p = key.data
                    try:
                        done = not os.read(p.fd, 1 << 16)
                    except OSError:
                        done = True
                    if done:
                        self._forget(p)
            for p in list(self._procs.values()):
                self._forget(p, kill=True)
            self._sel.close()
            if self._binding is not None:
                self._binding.close()
                self._binding = None

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ── workers ──

    def _start_zygote(self) -> None:
        env = dict(os.environ)
        # The workers must run this very code, whatever the caller's sys.path tricks.
        env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-m", "verifier_service.evaluation.worker", "--zygote-fd", str(theirs.fileno())]
        try:
            self._zygote = subprocess.Popen(argv + ["--allow-torch-version"] * self.allow_torch_version,
                                            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, env=env)
        finally:
            theirs.close()
        self._control = mine

    def _stop_zygote(self) -> None:
        if self._control is not None:
            self._control.close()  # the zygote's end of stream: it exits
            self._control = None
        if self._zygote is not None:
            try:
                self._zygote.wait(2.0)
            except subprocess.TimeoutExpired:
                self._zygote.kill()
                self._zygote.wait()
            self._zygote = None

    def _spawn(self) -> None:
        # A zygote that died takes its queue of requests with it; the requested workers' sockets close.
        if self._zygote is None or self._zygote.poll() is not None:
            self._stop_zygote()
            self._start_zygote()
        mine, theirs = socket.socketpair()
        try:
            socket.send_fds(self._control, [b"F"], [theirs.fileno()])  # type: ignore[arg-type]
        except OSError:
            self._stop_zygote()  # gone between the check and the send: the next spawn starts another
        finally:
            theirs.close()
        p = _Proc(mine, mine.fileno())
        self._procs[p.fd] = p
        self._sel.register(p.fd, selectors.EVENT_READ, p)

    def _fill(self) -> None:
        while len(self._procs) < self.size:
            self._spawn()

    def _forget(self, p: _Proc, kill: bool = False) -> None:
        if self._procs.pop(p.fd, None) is not None:
            try:
                self._sel.unregister(p.fd)
            except (KeyError, ValueError):
                pass
        p.sock.close()
        if kill and p.pid:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _send(self, p: _Proc, msg: dict[str, Any]) -> bool:
        try:
            wire.send(p.fd, msg)
            return True
        except OSError:  # the worker is gone; its end of stream says so shortly
            return False

    def _bind(self, task: Task) -> _Binding:
        b = self._binding
        if b is not None and b.spec == task.spec_hash.hex():
            return b
        self._binding = create_binding(task)
        if b is not None:
            b.close()  # workers keep their own mappings until they rebind
        return self._binding

    def _dispatch(self) -> None:
        b, run = self._binding, self._run
        for p in list(self._procs.values()):
            if b is not None and p.state in ("ready", "idle") and p.spec != b.spec:
                if self._send(p, b.message):
                    p.state, p.spec = "binding", b.spec
            elif p.state == "idle" and run is not None and run.pending:
                key = run.pending.popleft()
                self._next_id += 1
                msg = {"op": "eval", "id": self._next_id, "gen": run.generation, "slot": key.slot,
                       "start": key.start, "stop": key.stop}
                p.job, p.state = (self._next_id, run.generation, key), "busy"
                if not self._send(p, msg):
                    continue  # the job is requeued when the end of stream arrives
                if self.on_dispatch is not None:
                    self.on_dispatch(p.pid, key)

    def _evaluate(self, keys: list[ShardKey]) -> dict[ShardKey, RobustCount]:
        run = self._run = _Run(self._generation, deque(keys))
        self._start_failures = 0
        try:
            waiting_since = time.monotonic()
            while len(run.results) < len(keys):
                # Stopping the service must not wait for a whole evaluation.
                if self._closing.is_set():
                    raise EvaluationError("the evaluation pool is closing")
                self._fill()
                self._dispatch()
                if any(p.state in ("idle", "busy") for p in self._procs.values()):
                    waiting_since = time.monotonic()
                # Workers that never come up must not hang the verifier.
                elif time.monotonic() - waiting_since > self.start_timeout_s:
                    raise EvaluationError(f"no evaluation worker ready after {self.start_timeout_s:.0f}s")
                self._pump(1.0)
            return run.results
        finally:
            self._run = None

    def _pump(self, timeout: float) -> None:
        for key, _ in self._sel.select(timeout):
            p: _Proc = key.data
            if self._procs.get(p.fd) is not p:
                continue  # forgotten while handling an earlier event of this round
            try:
                data = os.read(p.fd, 1 << 16)
            except OSError:
                data = b""
            if not data:
                self._on_exit(p)
                continue
            try:
                messages = p.decoder.feed(data)
            except ValueError as e:
                self._forget(p, kill=True)
                raise EvaluationError(f"evaluation worker {p.pid} sent a corrupt message: {e}") from e
            for msg in messages:
                self._on_message(p, msg)

    def _on_message(self, p: _Proc, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "ready":
            p.pid = int(msg.get("pid", 0))
            why = check_settings(msg.get("settings", {}), self._here)
            # Counts from a worker with other settings could differ from the serial code's.
            if why:
                self._forget(p, kill=True)
                raise WorkerMismatch(f"evaluation worker {p.pid} {why}")
            self.worker_settings.append(dict(msg.get("settings", {})))
            p.state = "ready"
        elif op == "bound":
            b = self._binding
            if b is None or msg.get("spec") != p.spec or p.spec != b.spec:
                p.state = "ready"  # bound to a task that is gone; rebind on the next dispatch
                p.spec = None
                return
            # The canary is the genesis model's logits: equal bits here, or this worker computes differently.
            if msg.get("canary") != b.canary:
                self._forget(p, kill=True)
                raise WorkerMismatch(f"evaluation worker {p.pid} computes different logits than this process "
                                     "(another CPU kernel path?); its counts would not be the serial counts")
            p.state = "idle"
            self._start_failures = 0
        elif op == "done":
            job, p.job, p.state = p.job, None, "idle"
            self.cpu_s += float(msg.get("cpu", 0.0))
            run = self._run
            # Only the answer to the job in flight, for the proof being evaluated now, is a count.
            if job is None or msg.get("id") != job[0] or run is None or job[1] != run.generation:
                return
            c = msg["counts"]
            run.results[job[2]] = RobustCount(correct=int(c[0]), fragile_correct=int(c[1]), fragile_wrong=int(c[2]))
        elif op == "error":
            job, p.job = p.job, None
            was_binding = p.state == "binding"
            p.state = "idle"
            if was_binding:
                self._forget(p, kill=True)
            run = self._run
            # A failed shard of an abandoned evaluation says nothing about the one running now.
            if not was_binding and (job is None or run is None or job[1] != run.generation):
                log.warning("evaluation worker failed on an abandoned shard", extra={"error": msg.get("message")})
                return
            raise EvaluationError(f"evaluation worker {p.pid} failed: {msg.get('message')}"
                                  + (f" (shard {job[2]})" if job else ""))

    def _on_exit(self, p: _Proc) -> None:
        state, job = p.state, p.job
        self._forget(p)
        self.replaced += 1
        log.warning("evaluation worker exited; replacing it", extra={"pid": p.pid, "state": state})
        if state in ("starting", "ready", "binding"):
            self._start_failures += 1
            # A worker that dies before it is ready will die again: say so instead of respawning forever.
            if self._start_failures >= self.max_attempts * self.size:
                raise EvaluationError(f"{self._start_failures} evaluation workers exited during start-up; "
                                      "their stderr says why")
        run = self._run
        if job is not None and run is not None and job[1] == run.generation:
            key = job[2]
            run.attempts[key] += 1
            # A shard that kills every worker it meets would otherwise loop forever.
            if run.attempts[key] >= self.max_attempts:
                raise ShardFailed(f"shard {key} lost its worker {run.attempts[key]} times; no count was produced")
            run.pending.appendleft(key)
