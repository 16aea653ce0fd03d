"""Local evaluation workers, and the zygote that forks them:
`python -m verifier_service.evaluation.worker --zygote-fd N`.

The pool starts one zygote per pool. The zygote runs the verifier's set-up once (pinned dispatch
before any tensor operation, deterministic mode, one thread), imports torch and the task code, and
then forks one worker per request: the pool sends it one end of a fresh socket pair (SCM_RIGHTS) and talks to the forked
worker over the other end. A worker therefore starts in milliseconds, shares the zygote's pages
copy-on-write, and inherits exactly the zygote's settings; a replacement costs no torch import.

Worker protocol (verifier_service.evaluation.wire frames over the worker's socket):

    worker -> ready {pid, settings}
    pool   -> bind  {spec, build, eval_batch, logit_margin, test: {...}, models: {...}}
    worker -> bound {spec, canary}                     (canary: hash of the genesis model's logits)
    pool   -> eval  {id, gen, slot, start, stop}
    worker -> done  {id, counts: [correct, fragile_correct, fragile_wrong], cpu}  or  error {id, message}
    pool   -> exit                                     (or end of stream: the pool is gone)

The test set and the proof's states live in shared memory the pool owns; the worker maps them, keeps
its own copy of each model, and reloads a slot only when the proof (the generation) changes.
"""
from __future__ import annotations

import mmap
import os
import signal
import socket
import sys
import time
import traceback
from typing import Any

from . import wire


def attach(name: str, size: int) -> mmap.mmap:
    """Map the pool's POSIX shared memory segment `name` (Linux: a file under /dev/shm)."""
    fd = os.open(os.path.join("/dev/shm", name.lstrip("/")), os.O_RDWR)
    try:
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


class Worker:
    def __init__(self, conn: int):
        self.conn = conn
        self.runner: Any = None
        self.layout: Any = None
        self.slots: list[int] = []
        self.models_map: mmap.mmap | None = None

    def handle(self, msg: dict[str, Any]) -> None:
        try:
            if msg["op"] == "bind":
                self.bind(msg)
            elif msg["op"] == "eval":
                self.evaluate(msg)
            else:
                raise ValueError(f"unknown command {msg['op']!r}")
        except Exception as e:  # noqa: BLE001 - every failure is reported to the pool, the worker lives on
            traceback.print_exc(file=sys.stderr)
            wire.send(self.conn, {"op": "error", "id": msg.get("id"), "message": f"{type(e).__name__}: {e}"})

    def bind(self, msg: dict[str, Any]) -> None:
        import torch

        from .layout import StateLayout
        from .shard import ShardRunner, load_builder

        # Drop the previous task's views first; the old mappings go with them.
        self.runner = self.models_map = None
        t = msg["test"]
        test_map = attach(t["shm"], t["nbytes"])
        n = t["x_shape"][0]
        numel = 1
        for d in t["x_shape"]:
            numel *= d
        x = torch.frombuffer(test_map, dtype=torch.float32, count=numel).view(t["x_shape"])  # (N, C, H, W)
        y = torch.frombuffer(test_map, dtype=torch.int64, count=n, offset=t["y_offset"])  # (N,)
        m = msg["models"]
        self.layout = StateLayout.from_json(m["layout"])
        self.slots = list(m["slots"])
        self.models_map = attach(m["shm"], m["nbytes"])
        self.runner = ShardRunner(load_builder(msg["build"]), x, y, msg["eval_batch"], msg["logit_margin"])
        self.runner.load(0, -1, self.layout.read(self.models_map, m["genesis"]))  # the next proof reloads slot 0
        wire.send(self.conn, {"op": "bound", "spec": msg["spec"], "canary": self.runner.canary(0)})

    def evaluate(self, msg: dict[str, Any]) -> None:
        # A shard before any task is bound has no test set to run on.
        if self.runner is None or self.models_map is None:
            raise RuntimeError("eval before bind")
        t0 = time.process_time()
        slot, gen = msg["slot"], msg["gen"]
        if not self.runner.has(slot, gen):
            self.runner.load(slot, gen, self.layout.read(self.models_map, self.slots[slot]))
        c = self.runner.count(slot, msg["start"], msg["stop"])
        wire.send(self.conn, {"op": "done", "id": msg["id"], "cpu": time.process_time() - t0,
                                 "counts": [c.correct, c.fragile_correct, c.fragile_wrong]})


def setup_process(allow_torch_version: bool = False) -> str:
    """The verifier's arithmetic in this process: pinned CPU dispatch (pol_core.portable), deterministic
    mode, one thread. Returns the dispatch in force. Raises DispatchNotPinned where it cannot hold.

    Must run before this process's first tensor operation: nothing this module or the package's
    __init__ imports runs one. `allow_torch_version` (benchmarks on a machine with another torch
    release only) skips the release check and keeps every other one; the pool refuses a worker whose
    torch differs from its own either way.
    """
    from pol_core import portable

    portable.pin_cpu_dispatch(allow_torch_version=allow_torch_version)

    from pol_core.step import enable_deterministic_mode

    enable_deterministic_mode()
    return portable.check_cpu_dispatch().describe()


def serve(conn: int) -> int:
    """One worker: answer the pool on the socket `conn` until it says exit or goes away."""
    import torch

    from .shard import describe_settings

    torch.set_num_threads(1)  # idempotent (the zygote's pin set it); the pool checks it in `ready`
    wire.send(conn, {"op": "ready", "pid": os.getpid(), "settings": describe_settings()})
    worker = Worker(conn)
    try:
        while True:
            msg = wire.recv(conn)
            if msg is None or msg.get("op") == "exit":
                return 0
            worker.handle(msg)
    except (BrokenPipeError, ConnectionResetError):  # the pool is gone; nobody is left to answer
        return 0


def zygote(control: socket.socket, allow_torch_version: bool = False) -> int:
    """Fork a worker for every socket the pool sends; exit when the pool closes the control socket."""
    os.dup2(2, 1)  # stray prints (C libraries included) go to stderr
    setup_process(allow_torch_version)  # forked workers inherit the pinned dispatch
    import pol_core.tasks.cifar  # noqa: F401 - the task code and torchvision, loaded once for every worker
    import pol_core.tasks.digits  # noqa: F401
    import torchvision.models  # noqa: F401

    from . import layout, shard  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps exited workers
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(control, 16, 4)
        except OSError:
            return 0
        if not msg:
            return 0  # the pool is gone
        for fd in fds:
            if os.fork() == 0:
                code = 1
                try:
                    # Only its own socket: another worker's end held here would hide that worker's death.
                    control.close()
                    for other in fds:
                        if other != fd:
                            os.close(other)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    code = serve(fd)
                finally:
                    os._exit(code)  # never run the zygote's exit handlers in a worker
        for fd in fds:
            os.close(fd)


def main(argv: list[str]) -> int:
    # A worker only ever runs forked from a zygote, so that every worker has the zygote's set-up.
    allow = "--allow-torch-version" in argv
    argv = [a for a in argv if a != "--allow-torch-version"]
    if len(argv) != 2 or argv[0] != "--zygote-fd":
        print("usage: python -m verifier_service.evaluation.worker --zygote-fd FD [--allow-torch-version]\n"
              "(started by verifier_service.evaluation.pool)", file=sys.stderr)
        return 2
    return zygote(socket.socket(fileno=int(argv[1])), allow)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
