"""Sharded evaluation (issue 15): 1, 2 and 3 local workers and a local Ray instance give the serial
code's counts, fragile counts and verdicts bit for bit, on digits-cnn and on ResNet-18 with generated
CIFAR-format data; a killed worker never produces a wrong count; known counts skip evaluation."""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, replace
from typing import Callable

import pytest
import torch

from pol_core.evaluation import KnownCount, evaluate_serial
from pol_core.header import compute_genesis_header, compute_header_hash
from pol_core.keccak import keccak256
from pol_core.requirements import compute_requirements, is_requirements_met
from pol_core.step import compute_correct, compute_robust_count, process_step
from pol_core.tasks import cifar, digits
from pol_core.tasks.spec import Task
from pol_core.types import ConsensusError
from pol_core.verify import Proof, compute_verdict
from pol_core.weights import compute_weights_hash, get_flat_params
from verifier_service.evaluation import ShardFailed, WorkerMismatch, make_evaluator
from verifier_service.evaluation.layout import StateLayout
from verifier_service.evaluation.pool import LocalPool
from verifier_service.evaluation.shard import ShardRunner, check_settings, compute_shards, describe_settings
from verifier_service.config import load_config

from .helpers import deploy_fresh, mine_on, start_verifier_process, submit_found
from .proofs import proof_from_genesis

MINER = b"\x22" * 20


@pytest.fixture(scope="module")
def small_digits() -> Task:
    # eval_batch 64 cuts the 360 test images into 6 shards (the last one ragged); a wide logit margin
    # makes the fragile counts non-trivial.
    return Task(replace(digits.CONFIG, eval_batch=64, logit_margin=0.05, rules="paper"), digits.load_digits_data(),
                digits.build_digits_cnn)


@pytest.fixture(scope="module")
def small_resnet(tmp_path_factory) -> Task:
    # 36 test images in eval batches of 8: 5 shards, the last one ragged.
    root = cifar.write_cifar_like(tmp_path_factory.mktemp("cifar"), n_train_per_file=13, n_test=36, seed=5)
    return Task(replace(cifar.CONFIG, eval_batch=8, logit_margin=0.3, rules="paper"), cifar.load_cifar_data(root),
                cifar.build_resnet18_cifar)


@dataclass
class Reference:
    """The serial code's answers for one task, computed once."""

    states: list  # [W', W]
    counts: list  # compute_robust_count of each
    proof: Proof
    parent: object
    parent_hash: bytes
    verdict: tuple


@pytest.fixture(scope="module")
def reference(request) -> Callable[[str], Reference]:
    cache: dict[str, Reference] = {}

    def get(name: str) -> Reference:
        if name not in cache:
            task = request.getfixturevalue(name)
            proof, parent, parent_hash, states = proof_from_genesis(task)
            cache[name] = Reference(states, serial_robust(task, states), proof, parent, parent_hash,
                                    outcome(task, parent, parent_hash, proof, evaluate_serial))
        return cache[name]

    return get


@pytest.fixture(scope="module")
def pools():
    """Three warm pools, started together (their workers import torch in parallel)."""
    made = {n: LocalPool(n) for n in (1, 2, 3)}
    yield made
    pids = [pid for p in made.values() for pid in p.worker_pids()]
    zygotes = [p.zygote_pid for p in made.values()]
    for p in made.values():
        p.close()
    # A clean shutdown leaves no worker behind (the zygotes are this process's children: reaped).
    assert pids and wait_for(lambda: not any(_alive(pid) for pid in pids), 5)
    assert all(z is not None and not _alive(z) for z in zygotes)


@pytest.fixture(scope="module")
def ray_evaluator():
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    ev = make_evaluator(ray_address="local")  # joins the instance this test started
    yield ev
    ev.close()
    ray.shutdown()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def outcome(task, parent, parent_hash, proof, evaluator, known=None):
    try:
        v = compute_verdict(task, parent, parent_hash, 1, proof, evaluator=evaluator, known_before=known)
    except ConsensusError as e:
        return (type(e).__name__, str(e))
    return ("accepted", v.header, v.block_hash)


def serial_robust(task: Task, states) -> list:
    return [compute_robust_count(task.model_from_state(s), task.test_x, task.test_y, task.config.eval_batch,
                                 task.config.logit_margin) for s in states]


# ── pure pieces ──


def test_shards_start_on_eval_batch_boundaries():
    assert compute_shards(360, 64) == [(0, 64), (64, 128), (128, 192), (192, 256), (256, 320), (320, 360)]
    assert compute_shards(360, 64, batches_per_shard=4) == [(0, 256), (256, 360)]
    assert compute_shards(10, 512) == [(0, 10)]
    with pytest.raises(ValueError):
        compute_shards(10, 0)


def test_runner_refuses_a_shard_off_the_batch_grid(small_digits):
    """A shard off the grid would run other batch shapes than the serial loop: refused, never counted."""
    t = small_digits
    r = ShardRunner(t.builder, t.test_x, t.test_y, t.config.eval_batch, t.config.logit_margin)
    r.load(0, 1, t.genesis_state)
    assert r.count(0, 320, 360).correct >= 0  # the ragged last batch is on the grid
    for bad in [(10, 74), (0, 100), (64, 400), (64, 64)]:
        with pytest.raises(ValueError):
            r.count(0, *bad)


def test_layout_round_trip_is_exact(small_resnet):
    state = proof_from_genesis(small_resnet)[3][0]
    layout = StateLayout.of(small_resnet.genesis_state)
    buf = bytearray(layout.nbytes)
    layout.write(state, buf)
    back = layout.read(buf)
    assert list(back) == list(state)
    assert compute_weights_hash(back) == compute_weights_hash(state)
    with pytest.raises(ValueError):
        layout.write({k: v for k, v in list(state.items())[:-1]}, buf)  # a missing entry


def test_worker_settings_must_match():
    here = describe_settings()
    assert check_settings({**here, "threads": 1, "deterministic": True}, here) is None
    assert "threads" in check_settings({**here, "threads": 2, "deterministic": True}, here)
    assert "deterministic" in check_settings({**here, "threads": 1, "deterministic": False}, here)
    assert "capability" in check_settings({**here, "threads": 1, "deterministic": True, "capability": "AVX512"}, here)
    assert "dispatch" in check_settings({**here, "threads": 1, "deterministic": True, "dispatch": "oneDNN on"}, here)


def test_workers_are_pinned_like_this_process_or_refused(small_digits):
    """Workers pin their CPU dispatch at start-up (pol_core.portable), as this pinned test process did:
    their reported dispatch is this process's. A pool whose own process computes with another
    dispatch (a verifier that is not pinned) refuses its pinned workers rather than mix the two."""
    from pol_core.portable import check_cpu_dispatch

    with LocalPool(1) as pool:
        pool.prepare(small_digits)
        assert pool.worker_settings[0]["dispatch"] == check_cpu_dispatch().describe()
    with LocalPool(1) as pool:
        pool._here = {**pool._here, "dispatch": "torch 2.14.1, ATen AVX2, MKL CNR branch 2, oneDNN on"}
        with pytest.raises(WorkerMismatch, match="dispatch"):
            pool.prepare(small_digits)


def test_evaluation_and_its_bench_need_no_chain_or_network_code():
    """The workers, and bench/eval_shard.py on a bare machine, load only pol_core, the evaluation
    package, torch and numpy: no web3, gRPC or generated pol.v1 code."""
    import subprocess
    import sys

    code = ("import sys\nimport bench.eval_shard, tests.proofs, pol_core.verify, pol_core.tasks.cifar\n"
            "from verifier_service.evaluation import pool, worker, shard, layout, serial\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('web3', 'grpc', 'eth_account', 'prover', "
            "'pol_chain', 'ray') or m.startswith('pol.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_config_reads_the_ray_table(tmp_path):
    p = tmp_path / "v.toml"
    p.write_text('[verifier]\neval_workers = 3\n[verifier.ray]\naddress = "10.0.0.5:6379"\nactors = 8\n')
    cfg = load_config(p)
    assert (cfg.eval_workers, cfg.ray_address, cfg.ray_actors) == (3, "10.0.0.5:6379", 8)
    assert load_config(p, ray_address="local").ray_address == "local"
    p.write_text('[verifier.ray]\naddres = "typo"\n')
    with pytest.raises(ValueError):
        load_config(p)


# ── the seam: counts the rules already know ──


def test_known_count_skips_only_the_matching_weights(small_digits):
    t = small_digits
    proof, parent, parent_hash, _ = proof_from_genesis(t)
    seen: list[int] = []

    def spy(task, states):
        seen.append(len(states))
        return evaluate_serial(task, states)

    full = outcome(t, parent, parent_hash, proof, spy)
    assert seen == [2]
    # W is the parent's W' (genesis): its count is the parent's correctAfter, W is not evaluated again.
    vouched = KnownCount(parent.new_weights_hash, parent.correct_after)
    assert outcome(t, parent, parent_hash, proof, spy, vouched) == full
    assert seen == [2, 1]
    # A count for other weights is never used, whatever it says.
    other = KnownCount(keccak256(b"other weights"), 0)
    assert outcome(t, parent, parent_hash, proof, spy, other) == full
    assert seen == [2, 1, 2]


def test_chain_bound_verdict_does_not_evaluate_w_when_the_segment_is_empty(digits, digits_cb, monkeypatch):
    """Chain-bound: an empty segment makes W the parent's canonical W', whose count is on chain, so
    only W' is evaluated; a non-empty segment evaluates both. With the rule removed (W always
    evaluated) the verdicts are the same: the vouched count is the count."""
    import pol_core.chainbound as cb
    from pol_core.segment import EMPTY_SEGMENT

    from .attacks import find_step, make_scenario, sorted_batch, train, trained_parent

    gen = torch.Generator().manual_seed(21)
    sc = make_scenario(digits, digits_cb, trained_parent(digits_cb, gen, steps=10), 2)
    seen: list[int] = []

    def spy(task, states):
        seen.append(len(states))
        return evaluate_serial(task, states)

    def verdict(segment, indices):
        return cb.compute_chain_bound_verdict(digits_cb, sc.tip, sc.parent_state, sc.cb_proof(segment, indices), spy)

    p, before, _ = find_step(digits_cb, sc.parent_state, sc.cb_requirements(), gen, lambda b, a: a > b)
    empty = verdict(EMPTY_SEGMENT, p)
    assert seen == [1] and empty.header.correct_before == before == sc.tip.header.correct_after
    segment = (sorted_batch(gen, digits_cb.train_size, 16),)
    w = train(digits_cb, sc.parent_state, segment)
    q, _, _ = find_step(digits_cb, w, sc.cb_requirements(), gen, lambda b, a: a > b and a >= sc.parent_correct)
    trained = verdict(segment, q)
    assert seen == [1, 2]
    monkeypatch.setattr(cb, "get_known_correct", lambda known, weights_hash: None)  # the rule removed
    assert verdict(EMPTY_SEGMENT, p).header == empty.header and verdict(segment, q).header == trained.header
    assert seen == [1, 2, 2, 2]


# ── bit-identity, local pools and Ray ──


@pytest.mark.parametrize("name", ["small_digits", "small_resnet"])
def test_counts_and_verdicts_identical_for_1_2_3_workers(name, request, reference, pools):
    task: Task = request.getfixturevalue(name)
    ref = reference(name)
    assert sum(c.fragile_correct + c.fragile_wrong for c in ref.counts) > 0  # the fragile comparison is not vacuous
    assert len(compute_shards(task.test_x.shape[0], task.config.eval_batch)) > 3  # more shards than workers
    for n, pool in pools.items():
        assert pool.robust_counts(task, ref.states) == ref.counts, f"{n} workers"
        assert outcome(task, ref.parent, ref.parent_hash, ref.proof, pool) == ref.verdict, f"{n} workers"
    assert pools[2](task, ref.states) == [c.correct for c in ref.counts]


def test_digits_proof_is_accepted_the_same_everywhere(small_digits, pools):
    """At least one accepted verdict in the comparison: a proof found by Algorithm 1 on digits-cnn."""
    from prover.faithful import mine_faithful

    t = small_digits
    correct = compute_correct(t.new_model(), t.test_x, t.test_y, t.config.eval_batch)
    parent = compute_genesis_header(t.spec_hash, t.genesis_hash, correct, 2)
    parent_hash = compute_header_hash(parent)
    found = mine_faithful(t, t.new_model(), compute_requirements(parent_hash, 2, t.num_params),
                          torch.Generator().manual_seed(3), max_attempts=5000)
    assert found is not None
    proof = Proof(parent_hash, 1, found.indices, compute_weights_hash(found.state), found.state, MINER)
    serial = compute_verdict(t, parent, parent_hash, 2, proof)
    for pool in pools.values():
        v = compute_verdict(t, parent, parent_hash, 2, proof, evaluator=pool)
        assert (v.header, v.block_hash) == (serial.header, serial.block_hash)


# ── dead workers ──


def test_worker_killed_mid_shard_is_replaced_and_the_count_is_right(small_digits, pools):
    pool, t = pools[2], small_digits
    states = proof_from_genesis(t)[3]
    want = serial_robust(t, states)
    killed: list[int] = []

    def kill_first(pid, key):
        if not killed:
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)

    pool.on_dispatch = kill_first
    try:
        assert pool.robust_counts(t, states) == want
    finally:
        pool.on_dispatch = None
    assert killed and pool.replaced >= 1 and killed[0] not in pool.worker_pids()
    pool.prepare(t)  # the replacement is up
    assert len(pool.worker_pids()) == 2


def test_worker_killed_between_proofs_is_replaced(small_digits, pools):
    pool, t = pools[3], small_digits
    states = proof_from_genesis(t)[3]
    want = serial_robust(t, states)
    assert pool.robust_counts(t, states) == want
    victim = pool.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    assert pool.robust_counts(t, states) == want
    pool.prepare(t)
    assert victim not in pool.worker_pids() and len(pool.worker_pids()) == 3


def test_a_shard_that_keeps_losing_its_worker_fails_with_no_count(small_digits, pools):
    pool, t = pools[1], small_digits
    states = proof_from_genesis(t)[3]
    pool.max_attempts = 1  # the retry itself is shown above; here: when retries run out, no count
    pool.on_dispatch = lambda pid, key: os.kill(pid, signal.SIGKILL)
    try:
        with pytest.raises(ShardFailed, match="lost its worker 1 times"):
            pool.robust_counts(t, states)
    finally:
        pool.on_dispatch = None
        pool.max_attempts = 3
    assert pool.robust_counts(t, states) == serial_robust(t, states)  # the pool recovers


def test_a_worker_computing_other_bits_is_refused(small_digits, pools, monkeypatch):
    """The canary is the guard against a worker whose kernels differ: break it and the pool refuses."""
    import verifier_service.evaluation.pool as pool_mod

    pool = pools[1]
    other = Task(replace(small_digits.config, eval_batch=128), small_digits.raw, small_digits.builder)
    monkeypatch.setattr(pool_mod, "compute_canary", lambda *a: "0" * 64)
    with pytest.raises(WorkerMismatch, match="different logits"):
        pool.robust_counts(other, proof_from_genesis(other)[3])



# ── the verifier service with a pool ──


def eval_processes(root: int) -> list[int]:
    """The verifier_service.evaluation processes (the zygote and its workers) below process `root`."""
    parents: dict[int, int] = {}
    cmds: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmds[int(entry)] = f.read()
        except OSError:
            continue
    below, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - below
        below |= frontier
    return sorted(pid for pid in below if b"verifier_service.evaluation.worker" in cmds.get(pid, b""))


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_a_killed_verifier_leaves_no_evaluation_process_behind(anvil, digits, tmp_path):
    """`pol verifier serve --eval-workers 2`: a real proof over gRPC is verified by the pool with the
    serial counts; after a kill -9 of the verifier its zygote and workers exit on their own."""
    from pol.client import VerifierClient

    deploy_fresh(anvil.url, digits, tmp_path / "d.json")
    vp = start_verifier_process(tmp_path / "d.json", tmp_path / "v", "--eval-workers", "2")
    try:
        assert wait_for(lambda: len(eval_processes(vp.proc.pid)) == 3)  # the zygote and 2 workers
        workers = eval_processes(vp.proc.pid)
        client = VerifierClient(f"127.0.0.1:{vp.port}")
        tip = client.get_tip()
        found = mine_on(digits, tip)
        resp = submit_found(client, digits, tip, found)
        assert resp.attested and (resp.correct_before, resp.correct_after) == (found.correct_before, found.correct_after)
        client.close()
        vp.kill9()
        # The orphaned zygote and workers see their sockets close and exit on their own.
        assert wait_for(lambda: not any(_alive(w) for w in workers), 30)
    finally:
        vp.stop()


class SpyEvaluator:
    """A local pool, recording how many states each verdict asked for."""

    def __init__(self, inner: LocalPool) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def __call__(self, task, states):
        self.calls.append(len(states))
        return self.inner(task, states)

    def prepare(self, task, timeout_s=None) -> None:
        self.inner.prepare(task, timeout_s)

    def close(self) -> None:
        self.inner.close()


def test_verifier_does_not_evaluate_w_when_it_is_the_tips_w_prime(anvil, digits, tmp_path):
    """A verifier with a pool: a proof whose W is the tip's canonical W' is verified with one
    evaluation, its correctBefore is the tip's correctAfter, and the block is accepted and attested
    like any other; stopping the verifier stops the pool's processes."""
    from pol.client import VerifierClient
    from prover.faithful import draw_indices
    from verifier_service.config import VerifierConfig
    from verifier_service.journal import Journal, ModelStore
    from verifier_service.metrics import Metrics
    from verifier_service.node import VerifierNode
    from verifier_service.server import create_server

    from .helpers import KEY

    dep = deploy_fresh(anvil.url, digits, tmp_path / "d.json")
    spy = SpyEvaluator(LocalPool(2))
    node = VerifierNode(task=digits, deployment=dep, chain=dep.client(KEY), journal=Journal(tmp_path / "v" / "j.sqlite"),
                        models=ModelStore(tmp_path / "v" / "models"), metrics=Metrics(),
                        cfg=VerifierConfig(receipt_wait_s=20), evaluator=spy)
    server, port = create_server(node, "127.0.0.1:0")
    node.start()
    server.start()
    client = VerifierClient(f"127.0.0.1:{port}")
    try:
        tip = client.get_tip()
        found = mine_on(digits, tip)
        first = submit_found(client, digits, tip, found)
        assert first.attested
        # Mined from genesis: W is the genesis tip's W' only if the very first attempt met R.
        assert spy.calls == [1 if compute_weights_hash(found.state) == bytes(tip.model_hash) else 2]
        tip = client.get_tip()
        w = client.get_model(bytes(tip.model_hash), list(digits.genesis_state))  # the canonical W'
        reqs = compute_requirements(bytes(tip.block_hash), tip.difficulty, digits.num_params)
        gen = torch.Generator().manual_seed(11)
        for _ in range(2000):  # one step from W' itself that meets R and gains accuracy
            indices = draw_indices(gen, digits.train_size, digits.config.batch_size)
            model = digits.model_from_state(w)
            before = get_flat_params(model)
            process_step(model, *digits.batch(indices), digits.config)
            if is_requirements_met(before, get_flat_params(model), reqs) and compute_correct(
                    model, digits.test_x, digits.test_y, digits.config.eval_batch) > first.correct_after:
                break
        else:
            pytest.fail("no one-step proof from the tip's W'")
        second = client.submit(digits.name, bytes(tip.block_hash), tip.height + 1, indices, bytes(tip.model_hash),
                               w, MINER)
        assert second.attested and second.height == 2
        assert second.correct_before == first.correct_after
        assert spy.calls[-1] == 1  # W' only: W's count came from the tip
        pids = spy.inner.worker_pids() + [spy.inner.zygote_pid]
    finally:
        client.close()
        server.stop(0)
        node.stop()
    assert len(pids) == 3 and wait_for(lambda: not any(_alive(pid) for pid in pids), 10)

# ── Ray, last: its processes are stopped when the module ends ──


@pytest.mark.parametrize("name", ["small_digits", "small_resnet"])
def test_ray_counts_and_verdicts_identical(name, request, reference, ray_evaluator):
    task: Task = request.getfixturevalue(name)
    ref = reference(name)
    assert ray_evaluator.robust_counts(task, ref.states) == ref.counts
    assert outcome(task, ref.parent, ref.parent_hash, ref.proof, ray_evaluator) == ref.verdict
