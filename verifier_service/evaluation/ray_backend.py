"""Sharded evaluation on a Ray cluster: the same shards as the local pool, as calls on single-CPU actors.

The test set goes into Ray's object store once per task, and each proof's states once per proof (one
flat buffer per state in .layout's format). Actors keep their own models and reload a state only
when the proof changes. Every actor must compute the bits this process computes: its settings
and its canary (the genesis model's logits) are checked when it starts, so a node with another CPU
kernel path is refused instead of silently changing a count. An actor that dies is replaced and its
shard retried; any other failure fails the evaluation.

Cluster nodes need this package and the same torch installed. The module's top level runs no tensor
operation, so an actor pins its CPU dispatch (.worker.setup_process) before its first one.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import ray

from . import EvaluationError, ShardFailed, WorkerMismatch

if TYPE_CHECKING:
    from pol_core.step import RobustCount
    from pol_core.tasks import Task
    from pol_core.types import CorrectCount
    from pol_core.weights import StateDict

    from .layout import StateLayout


def actor_env() -> dict[str, str]:
    """Environment of every actor process, set by Ray before the process starts. The actor's process is
    started by the cluster's raylet and inherits nothing from this one; it pins its own dispatch in
    ShardActor.__init__ (worker.setup_process), before any tensor operation."""
    return {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@ray.remote(num_cpus=1, max_restarts=0)
class ShardActor:
    def __init__(self, build: str, eval_batch: int, logit_margin: float, test_refs: list[Any]):
        from .worker import setup_process

        setup_process()  # first: pinned dispatch before this process's first tensor operation
        import numpy as np
        import torch

        from .shard import ShardRunner, load_builder

        x, y = ray.get(test_refs)
        self.runner = ShardRunner(load_builder(build), torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y)),
                                  eval_batch, logit_margin)
        self.layout: Any = None

    def start(self, layout_doc: dict[str, Any], genesis_ref: list[Any]) -> dict[str, Any]:
        from .layout import StateLayout
        from .shard import describe_settings

        self.layout = StateLayout.from_json(layout_doc)
        self.runner.load(0, -1, self.layout.read(ray.get(genesis_ref[0])))
        return {"settings": describe_settings(), "canary": self.runner.canary(0)}

    def count(self, generation: int, slot: int, state_ref: list[Any], start: int, stop: int) -> list[float]:
        """[correct, fragile_correct, fragile_wrong, CPU seconds spent]."""
        t0 = time.process_time()
        if not self.runner.has(slot, generation):
            self.runner.load(slot, generation, self.layout.read(ray.get(state_ref[0])))
        c = self.runner.count(slot, start, stop)
        return [c.correct, c.fragile_correct, c.fragile_wrong, time.process_time() - t0]


@dataclass
class _RayBinding:
    spec: str
    n: int
    eval_batch: int
    layout: StateLayout
    message: dict[str, Any]
    test_refs: list[Any]
    genesis_ref: Any
    canary: str
    actors: list[Any]


class RayEvaluator:
    """An Evaluator (pol_core.evaluation) whose shards run as Ray actor calls."""

    def __init__(self, address: str | None = None, actors: int | None = None, max_attempts: int = 3,
                 batches_per_shard: int = 1):
        from .shard import describe_settings

        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            if address == "local":
                ray.init(num_cpus=actors, include_dashboard=False)
            else:
                ray.init(address=address)
        # An actor count below one could never answer.
        if actors is not None and actors < 1:
            raise ValueError(f"a Ray evaluator needs at least one actor, got {actors}")
        self.actors = actors
        self.max_attempts = max_attempts
        self.batches_per_shard = batches_per_shard
        self.replaced = 0
        self.cpu_s = 0.0  # CPU seconds the actors spent on shards (loading models included)
        self._lock = threading.Lock()
        self._binding: _RayBinding | None = None
        self._here = describe_settings()
        self._generation = 0
        self._closed = False

    def __call__(self, task: Task, states: Sequence[StateDict]) -> list[CorrectCount]:
        from pol_core.types import CorrectCount

        return [CorrectCount(c.correct) for c in self.robust_counts(task, states)]

    def robust_counts(self, task: Task, states: Sequence[StateDict]) -> list[RobustCount]:
        import numpy as np

        from pol_core.step import RobustCount

        from .shard import ShardKey, compute_shards, sum_counts

        with self._lock:
            # A closed evaluator has no actors left.
            if self._closed:
                raise EvaluationError("the Ray evaluator is closed")
            b = self._bind(task)
            self._generation += 1
            refs = []
            for state in states:  # one object per state per proof, whatever the number of shards
                flat = np.empty(b.layout.nbytes, dtype=np.uint8)
                b.layout.write(state, flat)
                refs.append(ray.put(flat))
            shards = compute_shards(b.n, b.eval_batch, self.batches_per_shard)
            keys = [ShardKey(slot, a, z) for slot in range(len(states)) for a, z in shards]
            pending, idle = deque(keys), list(b.actors)
            inflight: dict[Any, tuple[Any, ShardKey]] = {}
            results: dict[ShardKey, RobustCount] = {}
            attempts: Counter[ShardKey] = Counter()
            while len(results) < len(keys):
                while idle and pending:
                    actor, key = idle.pop(), pending.popleft()
                    ref = actor.count.remote(self._generation, key.slot, [refs[key.slot]], key.start, key.stop)
                    inflight[ref] = (actor, key)
                done, _ = ray.wait(list(inflight), num_returns=1)
                for ref in done:
                    actor, key = inflight.pop(ref)
                    try:
                        c = ray.get(ref)
                    except ray.exceptions.RayActorError:
                        attempts[key] += 1
                        # A shard that kills every actor it meets would otherwise loop forever.
                        if attempts[key] >= self.max_attempts:
                            raise ShardFailed(f"shard {key} lost its Ray actor {attempts[key]} times") from None
                        pending.appendleft(key)
                        b.actors.remove(actor)
                        b.actors.append(self._start_actor(b))
                        idle.append(b.actors[-1])
                        self.replaced += 1
                    except ray.exceptions.RayError as e:
                        raise EvaluationError(f"Ray shard {key} failed: {e}") from e
                    else:
                        results[key] = RobustCount(correct=int(c[0]), fragile_correct=int(c[1]), fragile_wrong=int(c[2]))
                        self.cpu_s += float(c[3])
                        idle.append(actor)
            return [sum_counts([results[ShardKey(slot, a, z)] for a, z in shards]) for slot in range(len(states))]

    def prepare(self, task: Task, timeout_s: float | None = None) -> None:
        with self._lock:
            self._bind(task)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._binding is not None:
                for a in self._binding.actors:
                    ray.kill(a)
                self._binding = None
            if self._owns_ray:
                ray.shutdown()

    def __enter__(self) -> RayEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ── actors ──

    def _bind(self, task: Task) -> _RayBinding:
        import numpy as np

        from .layout import StateLayout
        from .shard import builder_path, compute_canary

        b = self._binding
        if b is not None and b.spec == task.spec_hash.hex():
            return b
        if b is not None:
            for a in b.actors:
                ray.kill(a)
            self._binding = None
        layout = StateLayout.of(task.genesis_state)
        genesis = np.empty(layout.nbytes, dtype=np.uint8)
        layout.write(task.genesis_state, genesis)
        nb = _RayBinding(
            spec=task.spec_hash.hex(), n=int(task.test_x.shape[0]), eval_batch=task.config.eval_batch, layout=layout,
            message={"build": builder_path(task.builder), "eval_batch": task.config.eval_batch,
                     "logit_margin": task.config.logit_margin},
            test_refs=[ray.put(task.test_x.contiguous().numpy()), ray.put(task.test_y.contiguous().numpy())],
            genesis_ref=ray.put(genesis),
            canary=compute_canary(task.new_model(), task.test_x, task.config.eval_batch),
            actors=[],
        )
        count = self.actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        nb.actors = self._start_actors(nb, count)
        self._binding = nb
        return nb

    def _start_actor(self, b: _RayBinding) -> Any:
        return self._start_actors(b, 1)[0]

    def _start_actors(self, b: _RayBinding, count: int) -> list[Any]:
        from .shard import check_settings

        m = b.message
        actors = [ShardActor.options(runtime_env={"env_vars": actor_env()}).remote(  # type: ignore[attr-defined]
            m["build"], m["eval_batch"], m["logit_margin"], b.test_refs) for _ in range(count)]
        try:
            infos = ray.get([a.start.remote(b.layout.to_json(), [b.genesis_ref]) for a in actors])
            for info in infos:
                why = check_settings(info["settings"], self._here)
                # Counts from an actor with other settings or other bits would not be the serial counts.
                if why is None and info["canary"] != b.canary:
                    why = "computes different logits than this process (another CPU kernel path?)"
                if why:
                    raise WorkerMismatch(f"Ray actor {why}")
        except BaseException as e:
            for a in actors:
                ray.kill(a)
            if isinstance(e, ray.exceptions.RayError):
                raise EvaluationError(f"Ray actors did not start: {e}") from e
            raise
        return actors
