"""The verifier under load: GetTip latency with many watchers and bad-proof clients, an honest proof's
latency under that load, throughput, and the verifier's RSS growth.

    .venv/bin/python bench/load.py [--watchers 500] [--bad-clients 128] [--seconds 15] [--runs 3]

Each run starts anvil, deploys digits-cnn (paper rules, k fixed at 2), starts `pol verifier serve` as
its own process, and then, from this process (grpc.aio, one connection per bad client, 20 watchers per
connection):
  - holds `--watchers` WatchTip streams;
  - runs `--bad-clients` clients, each submitting, one after another, a proof that fails late: W is the
    parent's model and P misses R, so it is refused (REQUIREMENTS_NOT_MET) only after admission, the
    weights hash and the update step;
  - samples GetTip every 20 ms from a separate process (its own GIL and its own session, so its own CPU
    share under autogroup scheduling), on its own connection; the samples of the first --warmup seconds
    (the clients connecting) are reported apart (getTip_p99_with_ramp_ms);
  - after a warm-up, submits one honest proof (mined before the load started) and times it until the
    verifier answers (accepted and attested on chain).
RSS is the verifier process's VmRSS, at the start of the load and at its end; the CPU share and RSS are
also given with the verifier's child processes (its verdict workers, verifier_service.verdicts). Goals: GetTip p99 <= 50 ms,
honest proof <= 2 s, RSS growth <= 200 MB. The figures printed per run and their median go in
docs/BENCHMARKS.md with the load average of the machine during the run (it is shared).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import torch

from pol.v1 import verifier_pb2 as pb
from pol_core.tasks import Task
from pol_core.types import Difficulty, Hash32
from pol.v1 import verifier_pb2_grpc as pb_grpc
from pol.wire import CHUNK_SIZE, encode_state, iter_chunks

ROOT = Path(__file__).resolve().parent.parent
LOCAL = [("grpc.use_local_subchannel_pool", 1)]  # every channel its own connection, as separate clients


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The verifier's child processes (its verdict workers)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def tree(measure, pid: int) -> float:
    """`measure` summed over the process and its children (those alive now)."""
    total = measure(pid)
    for c in children(pid):
        try:
            total += measure(c)
        except OSError:  # exited meanwhile
            pass
    return total


def proof_messages(header: pb.ProofHeader, blob: bytes) -> list[pb.SubmitProofRequest]:
    return [pb.SubmitProofRequest(header=header)] + [pb.SubmitProofRequest(weights_chunk=c)
                                                     for c in iter_chunks(blob, CHUNK_SIZE)]


def make_header(task: Task, tip: pb.Tip, state, indices, miner: bytes) -> tuple[pb.ProofHeader, bytes]:
    from pol_core.weights import compute_weights_hash

    blob = encode_state(state)
    return pb.ProofHeader(task=task.name, parent_hash=bytes(tip.block_hash), height=tip.height + 1,
                          indices=list(indices), weights_hash=compute_weights_hash(state), miner=miner,
                          weights_size=len(blob)), blob


def missing_indices(task: Task, tip: pb.Tip) -> tuple[int, ...]:
    """Indices whose step from genesis misses R: a proof that fails only after the update."""
    from pol_core.requirements import compute_requirements, is_requirements_met
    from pol_core.step import process_step
    from pol_core.weights import get_flat_params

    reqs = compute_requirements(Hash32(bytes(tip.block_hash)), Difficulty(tip.difficulty), task.num_params)
    gen = torch.Generator().manual_seed(7)
    while True:
        idx = tuple(torch.randperm(task.train_size, generator=gen)[:task.config.batch_size].tolist())
        m = task.new_model()
        before = get_flat_params(m)
        x, y = task.batch(idx)
        process_step(m, x, y, task.config)
        if not is_requirements_met(before, get_flat_params(m), reqs):
            return idx


# ── the sampler process: GetTip every 20 ms, and the honest proof ──

def sampler(target: str, seconds: float, honest_at: float, honest: tuple[bytes, bytes], out: mp.Queue,
            ready: "mp.synchronize.Event", go: "mp.synchronize.Event", nice: int = 0) -> None:
    # Its own session, as a client on another machine would be: with the kernel's autogroup scheduling
    # a session shares one CPU share, and the load generator's session would otherwise time the
    # sampler's own wait for a CPU, not the verifier's answer.
    os.setsid()
    if nice:
        os.nice(nice)  # the instrument (--sampler-nice): on a full machine it must not time its own wait
    channel = grpc.insecure_channel(target, options=LOCAL)
    stub = pb_grpc.VerifierStub(channel)
    stub.GetTip(pb.GetTipRequest(), timeout=30)  # connected before the clock starts
    ready.set()
    go.wait()
    header = pb.ProofHeader.FromString(honest[0])
    lat: list[float] = []
    at: list[float] = []  # when each sample was taken, seconds into the load
    t_start = time.monotonic()
    honest_s: float | None = None
    honest_err = ""
    t_end = time.monotonic() + seconds
    t_honest = time.monotonic() + honest_at
    import threading

    def submit() -> None:
        nonlocal honest_s, honest_err
        delay = max(0.0, t_honest - time.monotonic())
        time.sleep(delay)
        t0 = time.perf_counter()
        while True:
            try:
                r = stub.SubmitProof(iter(proof_messages(header, honest[1])), timeout=60)
                honest_s = time.perf_counter() - t0
                honest_err = "" if r.attested else "accepted, not attested"
                return
            except grpc.RpcError as e:
                # BUSY (every upload slot taken) is the one refusal an honest prover retries at once.
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.perf_counter() - t0 < 30:
                    time.sleep(0.02)
                    continue
                honest_err = f"{e.code().name}: {e.details()}"
                return

    th = threading.Thread(target=submit)
    th.start()
    while time.monotonic() < t_end:
        t0 = time.perf_counter()
        at.append(time.monotonic() - t_start)
        try:
            stub.GetTip(pb.GetTipRequest(), timeout=10)
            lat.append(time.perf_counter() - t0)
        except grpc.RpcError:
            lat.append(10.0)
        time.sleep(max(0.0, 0.02 - (time.perf_counter() - t0)))
    th.join()
    channel.close()
    out.put({"getTip": lat, "at": at, "honest_s": honest_s, "honest_err": honest_err})


# ── the load in this process ──

async def load(target: str, n_watchers: int, n_bad: int, bad: tuple[pb.ProofHeader, bytes], seconds: float,
               counts: dict[str, int]) -> None:
    stop = time.monotonic() + seconds
    w_channels = [grpc.aio.insecure_channel(target, options=LOCAL) for _ in range(max(1, n_watchers // 20))]
    b_channels = [grpc.aio.insecure_channel(target, options=LOCAL) for _ in range(n_bad)]

    async def watcher(ch: grpc.aio.Channel) -> None:
        call = pb_grpc.VerifierStub(ch).WatchTip(pb.GetTipRequest())
        try:
            async for _ in call:
                counts["tips"] += 1
                if time.monotonic() > stop:
                    break
        except grpc.aio.AioRpcError:
            counts["watch_errors"] += 1

    async def bad_client(ch: grpc.aio.Channel) -> None:
        stub = pb_grpc.VerifierStub(ch)
        header, blob = bad
        msgs = proof_messages(header, blob)
        while time.monotonic() < stop:
            try:
                await stub.SubmitProof(iter(msgs), timeout=30)
                counts["bad_accepted"] += 1
            except grpc.aio.AioRpcError as e:
                counts[f"bad_{e.code().name}"] = counts.get(f"bad_{e.code().name}", 0) + 1
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    await asyncio.sleep(0.01)

    watchers = [asyncio.create_task(watcher(w_channels[i % len(w_channels)])) for i in range(n_watchers)]
    clients = [asyncio.create_task(bad_client(ch)) for ch in b_channels]
    await asyncio.sleep(seconds)
    await asyncio.gather(*clients, return_exceptions=True)
    for w in watchers:
        w.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    for ch in w_channels + b_channels:
        await ch.close()


def one_run(args: argparse.Namespace, task: Task, workdir: Path) -> dict:
    from eth_account import Account

    from pol.genesis import Genesis
    from pol_chain import AnvilProcess, deploy_chain
    from pol_chain.anvil import ANVIL_DEV_KEYS
    from pol_chain.process import spawn, terminate
    from pol_core.requirements import compute_requirements
    from prover.faithful import mine_faithful
    from pol_core.verify import compute_genesis_correct

    key = ANVIL_DEV_KEYS[0]
    me = Account.from_key(key).address
    with AnvilProcess() as anvil:
        genesis = Genesis.for_task(task, compute_genesis_correct(task), me, me, difficulty=2, min_difficulty=2,
                                   max_difficulty=2)
        dep = deploy_chain(anvil.url, key, task.name, genesis)
        dep.save(workdir / "d.json")
        log = open(workdir / "verifier.log", "w")
        pin = ["taskset", "-c", args.verifier_cpus] if args.verifier_cpus else []
        proc = spawn([*pin, sys.executable, "-m", "pol_cli.main", "verifier", "serve", "--deployment", str(workdir / "d.json"),
                      "--data-root", str(workdir / "v"), "--listen", "127.0.0.1:0", "--log-level", "WARNING",
                      *(["--config", args.config] if args.config else [])],
                     stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            line = ""
            while "listening on port" not in line:
                line = str(proc.stdout.readline())  # type: ignore[union-attr]
                if not line and proc.poll() is not None:
                    raise RuntimeError(f"verifier did not start; see {workdir / 'verifier.log'}")
            target = f"127.0.0.1:{int(line.rsplit(' ', 1)[1])}"
            with grpc.insecure_channel(target) as ch:
                tip = pb_grpc.VerifierStub(ch).GetTip(pb.GetTipRequest(), timeout=30)
            # The honest proof, mined before the load starts.
            reqs = compute_requirements(Hash32(bytes(tip.block_hash)), Difficulty(tip.difficulty), task.num_params)
            found = mine_faithful(task, task.new_model(), reqs, torch.Generator().manual_seed(0), 20000)
            assert found is not None
            honest = make_header(task, tip, found.state, found.indices, b"\x0a" * 20)
            bad = make_header(task, tip, task.genesis_state, missing_indices(task, tip), b"\x0b" * 20)
            rss0, rss_tree0 = rss_mb(proc.pid), tree(rss_mb, proc.pid)
            load0 = os.getloadavg()[0]
            ctx = mp.get_context("spawn")
            q: mp.Queue = ctx.Queue()
            ready, go = ctx.Event(), ctx.Event()
            sp = ctx.Process(target=sampler, args=(
                target, args.seconds, args.seconds / 2, (honest[0].SerializeToString(), honest[1]), q, ready, go,
                args.sampler_nice))
            sp.start()
            ready.wait(120)
            counts: dict[str, int] = {"tips": 0, "watch_errors": 0, "bad_accepted": 0}
            t0, cpu0, tree_cpu0 = time.monotonic(), cpu_s(proc.pid), tree(cpu_s, proc.pid)
            go.set()
            asyncio.run(load(target, args.watchers, args.bad_clients, bad, args.seconds, counts))
            elapsed = time.monotonic() - t0
            verifier_cores = (cpu_s(proc.pid) - cpu0) / elapsed  # the share of the machine it got
            tree_cores = (tree(cpu_s, proc.pid) - tree_cpu0) / elapsed  # with its verdict workers
            res = q.get(timeout=120)
            sp.join(30)
            rss1, rss_tree1 = rss_mb(proc.pid), tree(rss_mb, proc.pid)
            # The first --warmup seconds are the clients connecting (628 connections at once): reported
            # apart, so the goal is judged on the load itself.
            lat = sorted(x for x, t in zip(res["getTip"], res["at"]) if t >= args.warmup)
            ramp = sorted(res["getTip"])
            slowest = sorted(zip(res["getTip"], res["at"]), reverse=True)[:5]
            answered = sum(v for k, v in counts.items() if k.startswith("bad_") and k not in ("bad_RESOURCE_EXHAUSTED",))
            return {
                "getTip_p50_ms": 1000 * lat[len(lat) // 2], "getTip_p99_ms": 1000 * lat[int(len(lat) * 0.99)],
                "getTip_samples": len(lat), "getTip_p99_with_ramp_ms": 1000 * ramp[int(len(ramp) * 0.99)],
                "slowest_getTip": [f"{1000 * ms:.0f} ms at {t:.1f} s" for ms, t in slowest], "honest_s": res["honest_s"], "honest_err": res["honest_err"],
                "bad_verified_per_s": answered / elapsed, "verifier_cpu_cores": verifier_cores,
                "verifier_and_workers_cpu_cores": tree_cores, "counts": counts,
                "rss_start_mb": rss0, "rss_end_mb": rss1, "rss_growth_mb": rss1 - rss0,
                "rss_with_workers_start_mb": rss_tree0, "rss_with_workers_growth_mb": rss_tree1 - rss_tree0,
                "loadavg_1m_before": load0, "loadavg_1m_after": os.getloadavg()[0],
            }
        finally:
            terminate(proc)
            log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--watchers", type=int, default=500)
    ap.add_argument("--bad-clients", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of the load (clients connecting) "
                                                                "whose GetTip samples are reported apart")
    ap.add_argument("--config", help="a verifier TOML ([verifier] table) to run the service with")
    ap.add_argument("--verifier-cpus", help="taskset CPU list for the verifier and its children, e.g. 1")
    ap.add_argument("--client-cpus", help="CPU list for this load generator and the sampler, e.g. 0: with "
                                          "--verifier-cpus, the clients stand for other machines")
    ap.add_argument("--sampler-nice", type=int, default=0, help="nice increment for the GetTip sampler "
                                                                "(negative: root only)")
    args = ap.parse_args()
    if args.client_cpus:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
    from pol_core.step import enable_deterministic_mode
    from pol_core.tasks import load_task

    enable_deterministic_mode()
    task = load_task("digits-cnn", rules="paper")
    runs = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            r = one_run(args, task, Path(d))
        runs.append(r)
        print(json.dumps({"run": i + 1, **r}), flush=True)
    med = {k: statistics.median(r[k] for r in runs if r[k] is not None)
           for k in ("getTip_p50_ms", "getTip_p99_ms", "getTip_p99_with_ramp_ms", "honest_s", "bad_verified_per_s", "rss_growth_mb",
                     "verifier_cpu_cores", "verifier_and_workers_cpu_cores", "rss_with_workers_growth_mb",
                     "loadavg_1m_before", "loadavg_1m_after") if any(r[k] is not None for r in runs)}
    print(json.dumps({"median_of_runs": args.runs, "watchers": args.watchers, "bad_clients": args.bad_clients,
                      "config": args.config, "verifier_cpus": args.verifier_cpus, "client_cpus": args.client_cpus,
                      "sampler_nice": args.sampler_nice, "seconds": args.seconds, "warmup": args.warmup, **{k: round(v, 2) for k, v in med.items()}}))


if __name__ == "__main__":
    main()
