"""Guided mining: the predictor's per-sample gradients, the proofs it finds, the segment, the fallback."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pol_core.header import compute_genesis_header, compute_header_hash
from pol_core.requirements import compute_requirements
from pol_core.segment import SegmentBounds, process_segment_check, process_segment_replay
from pol_core.step import compute_correct, process_step
from pol_core.types import Requirement
from pol_core.verify import Proof, compute_verdict
from pol_core.weights import compute_weights_hash, get_flat_params
from prover.guided import GuidedConfig, GuidedSearcher
from prover.search import make_searcher

CPU = torch.device("cpu")


def flat_offset(model: nn.Module, name: str, offset: int) -> int:
    """The flat parameter index of `offset` inside the parameter called `name`."""
    start = 0
    for n, p in model.named_parameters():
        if n == name:
            return start + offset
        start += p.numel()
    raise KeyError(name)


def frozen_stats_reference(task, state, x, y, where: list[int]) -> torch.Tensor:
    """Autograd, one sample at a time, with every BatchNorm normalising by the statistics of the
    whole batch x (a train-mode forward's), held fixed: (N, len(where))."""
    model = task.model_from_state(state)
    stats = {}
    hooks = [m.register_forward_hook(lambda m, i, o: stats.__setitem__(m, i[0].detach()))
             for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.train()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for m, inp in stats.items():
        m.running_mean.copy_(inp.mean((0, 2, 3)))
        m.running_var.copy_(inp.var((0, 2, 3), unbiased=False))
    model.eval()
    rows = []
    for n in range(x.shape[0]):
        model.zero_grad()
        F.cross_entropy(model(x[n : n + 1]), y[n : n + 1]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()])[where])
    return torch.stack(rows)


def batch_gradient(task, state, x, y, where: list[int]) -> torch.Tensor:
    model = task.model_from_state(state)
    model.train()
    F.cross_entropy(model(x), y).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])[where]


def trained_digits_state(digits, steps: int = 20):
    model = digits.new_model()
    gen = torch.Generator().manual_seed(11)
    for _ in range(steps):
        process_step(model, *digits.batch(torch.randperm(digits.train_size, generator=gen)[:4].tolist()),
                     digits.config)
    return {k: v.clone() for k, v in model.state_dict().items()}


DIGITS_TARGETS = [("0.weight", 5), ("1.weight", 3), ("1.bias", 6), ("3.weight", 700), ("4.weight", 11),
                  ("4.bias", 2), ("8.weight", 1234), ("8.bias", 7)]


def test_predictor_matches_autograd_per_sample(digits):
    state = trained_digits_state(digits)
    model = digits.model_from_state(state)
    where = [flat_offset(model, n, o) for n, o in DIGITS_TARGETS]
    reqs = [Requirement(2 * i + (i % 2)) for i in where]  # both directions
    s = GuidedSearcher(digits, model, reqs, torch.Generator().manual_seed(0), CPU, GuidedConfig(setup="separate"))
    idx = torch.arange(0, 640, 20)  # 32 samples: one pass, so its statistics are the whole batch's
    got = s.setup_separate(idx)  # (32, k)
    x, y = digits.batch(idx.tolist())
    want = frozen_stats_reference(digits, state, x, y, where)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-7), (got - want).abs().max()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), state.values()))  # W untouched


def test_fused_setup_is_a_plain_step_whose_contributions_average_to_its_gradient(digits):
    state = trained_digits_state(digits)
    model = digits.model_from_state(state)
    where = [flat_offset(model, n, o) for n, o in DIGITS_TARGETS]
    reqs = [Requirement(2 * i) for i in where]
    s = GuidedSearcher(digits, model, reqs, torch.Generator().manual_seed(0), CPU, GuidedConfig(train_j=3))
    assert (s.train_batch, s.train_lr) == (256, digits.config.lr * 8)
    idx = torch.arange(256) * 5
    contrib = s.train_step(idx, capture=True)  # (256, k)
    x, y = digits.batch(idx.tolist())
    assert torch.allclose(contrib.mean(0), batch_gradient(digits, state, x, y, where), rtol=1e-4, atol=1e-8)
    plain = digits.model_from_state(state)
    process_step(plain, x, y, digits.config)  # 256 = 4^3 * S: lr * 8
    # The capture hooks must not change a bit of the step the verifier replays.
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), model.state_dict().values()))
    assert s.segment == [tuple(idx.tolist())]


@pytest.mark.parametrize("setup", ["fused", "separate"])
def test_guided_proof_verifies_with_the_core_and_its_segment_replays(digits, setup):
    k = 12
    correct = compute_correct(digits.new_model(), digits.test_x, digits.test_y, digits.config.eval_batch)
    genesis = compute_genesis_header(digits.spec_hash, digits.genesis_hash, correct, k)
    parent = compute_header_hash(genesis)
    reqs = compute_requirements(parent, k, digits.num_params)
    # From a model a few steps in: at genesis most single steps lose test answers, and the
    # predictor's picks more often than random ones, so a proof there takes longer.
    start = trained_digits_state(digits)
    model, gen = digits.model_from_state(start), torch.Generator().manual_seed(2)
    if setup == "fused":  # the default, as `pol mine --mode guided` builds it
        s = make_searcher("guided", digits, model, reqs, gen, CPU, candidates=64)
        assert isinstance(s, GuidedSearcher) and s.cfg.setup == "fused"
    else:
        s = GuidedSearcher(digits, model, reqs, gen, CPU, GuidedConfig(candidates=64, setup=setup))
    found = None
    for _ in range(20):
        found = s.round()
        if found:
            break
    assert found is not None
    assert s.guided_attempts > 0
    p = [int(i) for i in found.indices]
    assert p == sorted(p) and len(set(p)) == len(p) == digits.config.batch_size  # strictly ascending
    v = compute_verdict(digits, genesis, parent, k, Proof(parent, 1, found.indices, compute_weights_hash(found.state),
                                                          found.state, b"\x01" * 20))
    assert v.header.correct_after > v.header.correct_before
    # W is the start advanced by the segment, which the chain-bound rules accept as it is.
    segment = tuple(s.segment)
    process_segment_check(segment, SegmentBounds.for_task(digits))
    assert [j for j, _ in s.segment_steps()] == [3] * len(segment) and s.train_batch == 256  # digits: at most 256
    replay = digits.model_from_state(start)
    process_segment_replay(digits, replay, segment)
    assert compute_weights_hash(replay.state_dict()) == compute_weights_hash(found.state)


def test_fallback_engages_when_the_pool_is_empty(digits):
    state = trained_digits_state(digits)
    model = digits.model_from_state(state)
    with torch.no_grad():  # a dead channel, as in issue 10: zero BatchNorm output and zero outgoing weights
        model[1].weight[2] = 0.0
        model[1].bias[2] = 0.0
        model[3].weight[:, 2] = 0.0
    dead = flat_offset(model, "3.weight", 0 * 72 + 2 * 9 + 4)  # conv 2, output 0, input channel 2
    reqs = compute_requirements(b"\x07" * 32, 6, digits.num_params) + [Requirement(2 * dead)]
    s = GuidedSearcher(digits, model, reqs, torch.Generator().manual_seed(0), CPU, GuidedConfig(candidates=16))
    for _ in range(3):
        assert s.round() is None  # strict rule: a weight no sample moves cannot be met
    assert (s.fallback_rounds, s.guided_attempts, s.attempts) == (3, 0, 48)
    assert len(s.segment) == 3  # training went on regardless

    # With the predictor off, the random candidates alone still find blocks at low k.
    model = digits.model_from_state(state)
    reqs = compute_requirements(b"\x08" * 32, 3, digits.num_params)
    s = GuidedSearcher(digits, model, reqs, torch.Generator().manual_seed(0), CPU, GuidedConfig(pool_size=0))
    found = next(f for f in (s.round() for _ in range(20)) if f is not None)
    assert s.guided_attempts == 0 and s.fallback_rounds == s.rounds
    before = digits.model_from_state(found.state)
    w0 = get_flat_params(before)
    process_step(before, *digits.batch(found.indices), digits.config)
    delta = (get_flat_params(before) - w0)[[r // 2 for r in reqs]]
    assert all((d < 0) if r % 2 else (d > 0) for r, d in zip(reqs, delta.tolist()))


def test_guided_miner_gets_blocks_accepted_by_a_real_verifier(anvil, digits, tmp_path):
    from prover.miner import Miner, MinerConfig

    from .helpers import deploy_fresh, start_verifier_process

    dep = deploy_fresh(anvil.url, digits, tmp_path / "d.json", difficulty=8)
    vp = start_verifier_process(tmp_path / "d.json", tmp_path / "v")
    try:
        miner = Miner(digits, MinerConfig(target=f"127.0.0.1:{vp.port}", miner=b"\x0e" * 20, mode="guided",
                                          candidates=64, max_blocks=1, seed=5))
        stats = miner.run()
    finally:
        vp.stop()
    assert stats.blocks_won == 1 and not stats.rejected
    blocks = dep.client().get_blocks(dep.deploy_block)
    assert [b.header.height for b in blocks] == [0, 1]
    assert list(blocks[1].header.indices) == sorted(blocks[1].header.indices)
    assert blocks[1].header.miner == b"\x0e" * 20


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    from pol_core.tasks import load_task
    from pol_core.tasks.cifar import write_cifar_like

    root = tmp_path_factory.mktemp("cifar")
    write_cifar_like(root, n_train_per_file=4, n_test=10)
    return load_task("cifar10-resnet18", str(root))


def as_float64(task):
    """The same task in float64. In float32 the early layers' gradients of this deep net move by up
    to 1% between two summation orders of the same function (eval-mode BatchNorm on 1 or 6
    samples), too much to check a formula against; in float64 the two agree to 1e-13."""
    t = copy.copy(task)
    t.train_x = task.train_x.double()
    t.new_model = lambda: task.new_model().double()
    return t


RESNET_TARGETS = [("conv1.weight", 17), ("layer1.0.bn1.weight", 5), ("layer1.0.bn2.bias", 9),
                  ("layer1.1.conv2.weight", 1000), ("layer2.0.downsample.0.weight", 77),
                  ("layer2.0.downsample.1.weight", 3), ("layer4.1.bn2.weight", 100), ("fc.weight", 321), ("fc.bias", 4)]


def test_resnet18_every_layer_type(resnet):
    """Conv (3x3, 1x1 stride 2), BatchNorm before an in-place ReLU and before the residual add, and
    linear: the set-up's per-sample gradients match autograd, and a round runs end to end."""
    r64 = as_float64(resnet)
    state64 = r64.new_model().state_dict()
    model64 = r64.model_from_state(state64)
    where = [flat_offset(model64, n, o) for n, o in RESNET_TARGETS]
    reqs = [Requirement(2 * i + (i % 2)) for i in where]
    s = GuidedSearcher(r64, model64, reqs, torch.Generator().manual_seed(0), CPU,
                       GuidedConfig(setup="separate", candidates=2, train_j=0))
    idx = torch.arange(2)
    got = s.setup_separate(idx)
    want = frozen_stats_reference(r64, state64, *r64.batch(idx.tolist()), where)
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-15), (got - want).abs().max()
    # Fused, in float32 as mined: the contributions average to the batch gradient (both come from
    # the same backward), and the step is bit for bit a plain one.
    state = resnet.genesis_state
    model = resnet.model_from_state(state)
    fused = GuidedSearcher(resnet, model, reqs, torch.Generator().manual_seed(0), CPU,
                           GuidedConfig(candidates=2, train_j=0))
    contrib = fused.train_step(torch.arange(4), capture=True)
    x, y = resnet.batch(list(range(4)))
    assert torch.allclose(contrib.mean(0), batch_gradient(resnet, state, x, y, where), rtol=1e-4, atol=1e-7)
    plain = resnet.model_from_state(state)
    process_step(plain, x, y, resnet.config)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), model.state_dict().values()))
    # One round from there, training on 16: candidates predicted, checked exactly, a step recorded.
    fused = GuidedSearcher(resnet, model, reqs, torch.Generator().manual_seed(0), CPU,
                           GuidedConfig(candidates=2, train_j=1))
    found = fused.round()
    assert fused.attempts == 2 and fused.guided_attempts >= 1
    assert len(fused.segment) == (0 if found else 1) and fused.train_batch == 16
    if found is not None:
        assert list(found.indices) == sorted(found.indices)


def test_subset_search_finds_the_exhaustive_best_and_never_repeats_a_sample():
    from itertools import combinations

    from prover.guided import compute_best_subsets

    gen = torch.Generator().manual_seed(3)
    z = torch.randn(14, 6, generator=gen)
    z[5] += 4.0  # one sample good everywhere: counted twice it would win every subset
    sets, scores = compute_best_subsets(z, 4, beam=4096, limit=50)
    best = max(float(z[list(c)].sum(0).min()) for c in combinations(range(14), 4))
    assert math.isclose(float(scores[0]), best, rel_tol=1e-6)
    assert all(len(set(row.tolist())) == 4 for row in sets)
    assert len({tuple(row.tolist()) for row in sets}) == len(sets)
    assert torch.equal(scores, z[sets].sum(1).min(1).values) and bool((scores[:-1] >= scores[1:]).all())


def test_segment_stays_within_the_chain_bound_bounds(digits_cb):
    """Under chain-bound rules a block's segment holds at most max_segment_steps steps of at most
    max_step_batch samples: past that the searcher keeps searching from where it is, adding no step."""
    task = digits_cb
    bounds = SegmentBounds.for_task(task)
    with pytest.raises(ValueError, match="not a segment step"):
        GuidedSearcher(task, task.new_model(), [Requirement(0)], torch.Generator(), CPU, GuidedConfig(train_j=4))
    reqs = compute_requirements(b"\x09" * 32, 64, task.num_params)  # never met
    for setup in ("fused", "separate"):
        model = task.model_from_state(trained_digits_state(task))
        s = GuidedSearcher(task, model, reqs, torch.Generator().manual_seed(0), CPU,
                           GuidedConfig(candidates=4, setup=setup, train_j=0, pool_size=0))
        s.max_steps = 3  # digits allows 32; three keep the test short
        for _ in range(5):
            assert s.round() is None
        assert len(s.segment) == 3 and s.rounds == 5
        process_segment_check(tuple(s.segment), bounds)
        replay = task.model_from_state(trained_digits_state(task))
        process_segment_replay(task, replay, tuple(s.segment))
        assert compute_weights_hash(replay.state_dict()) == compute_weights_hash(model.state_dict())
    assert GuidedSearcher(task, task.new_model(), reqs, torch.Generator(), CPU).max_steps == bounds.max_steps == 32


def test_bench_mine_imports_no_wire_or_chain_code_and_writes_its_reports(tmp_path):
    """bench/device_check.sh runs bench/mine.py on a GPU machine without web3 or the generated pol.v1
    code; a tiny CPU run writes the JSON and markdown it collects, every proof re-checked on the CPU."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import sys; base = set(sys.modules); import bench.mine; "
            "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - base})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=root, check=True, capture_output=True, text=True,
                                timeout=120).stdout.split())
    assert {"pol_core", "prover", "torch"} <= loaded
    assert not loaded & {"pol", "grpc", "google", "web3", "eth_account", "eth_abi", "eth_utils", "pydantic"}
    js, md = tmp_path / "m.json", tmp_path / "m.md"
    subprocess.run([sys.executable, "bench/mine.py", "--device", "cpu", "--threads", "1", "--tasks", "digits-cnn",
                    "--seconds", "0", "--useful-seconds", "0", "--ks", "4", "--modes", "fast,guided", "--seeds", "1",
                    "--cap", "1", "--json", str(js), "--markdown", str(md)],
                   cwd=root, check=True, capture_output=True, timeout=300)
    rows = json.loads(js.read_text())["tasks"]["digits-cnn"]["time_to_block"]["rows"]
    assert [(r["k"], r["mode"]) for r in rows] == [(4, "fast"), (4, "guided")]
    assert all(run["cpu_rejected"] is None for r in rows for run in r["runs"])
    assert rows[1]["found"] == 1  # guided finds a k = 4 block in its first round from the start model
    assert "| 4 |" in md.read_text()


def test_guided_proof_carries_the_miners_segment_and_redraw(digits_cb):
    """Under a miner (chain-bound) the guided searcher shares the miner's SegmentLog: steps kept on the
    same tip before it (an earlier redraw's searcher) stay first in the proof's segment, the proof names
    R's redraw index, and W' keeps the tip's count. Without the shared log the segment would not replay
    to W, and the verifier would refuse the proof."""
    from prover.faithful import SegmentLog

    task = digits_cb
    start = trained_digits_state(task)
    model = task.model_from_state(start)
    log = SegmentLog(task)
    earlier = tuple(sorted(int(i) for i in torch.randperm(task.train_size, generator=torch.Generator().manual_seed(3))
                           [: 4 * task.config.batch_size].tolist()))
    process_step(model, *task.batch(list(earlier)), task.config)  # the earlier searcher's step, kept
    log.record(earlier)
    floor = compute_correct(task.model_from_state(start), task.test_x, task.test_y, task.config.eval_batch) - 3
    reqs = compute_requirements(b"\x0a" * 32, 4, task.num_params)
    s = make_searcher("guided", task, model, reqs, torch.Generator().manual_seed(1), CPU, candidates=64, log=log,
                      floor=floor, redraw=2)
    assert isinstance(s, GuidedSearcher) and s.segment is log.steps and s.max_steps == task.config.max_segment_steps
    found = next((f for f in (s.round() for _ in range(30)) if f is not None), None)
    assert found is not None
    assert found.redraw == 2 and found.correct_after >= floor
    assert found.segment[0] == earlier and found.segment == log.segment()
    process_segment_check(found.segment, SegmentBounds.for_task(task))
    replay = task.model_from_state(start)
    process_segment_replay(task, replay, found.segment)
    assert compute_weights_hash(replay.state_dict()) == compute_weights_hash(found.state)


def test_pol_mine_guided_gets_chain_bound_blocks_accepted(anvil, digits_cb, tmp_path):
    """`pol mine --mode guided` against a chain-bound verifier: its proofs carry segments (no W) and the
    verifier replays them; every block's segment is served and hashes to the header's segmentRoot."""
    import subprocess
    import sys

    from pol.client import VerifierClient
    from pol.wire import decode_segment
    from pol_core.segment import compute_segment_root

    from .helpers import deploy_fresh, start_verifier_process

    dep = deploy_fresh(anvil.url, digits_cb, tmp_path / "d.json", difficulty=4)
    vp = start_verifier_process(tmp_path / "d.json", tmp_path / "v")
    try:
        out = subprocess.run([sys.executable, "-m", "pol_cli.main", "mine", "--verifier", f"127.0.0.1:{vp.port}",
                              "--miner", "0x" + "0f" * 20, "--mode", "guided", "--candidates", "64", "--max-blocks",
                              "2", "--threads", "1", "--seed", "3"], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        client = VerifierClient(f"127.0.0.1:{vp.port}")
        try:
            served = [client.get_block(height=h) for h in (1, 2)]
        finally:
            client.close()
    finally:
        vp.stop()
    blocks = dep.client().get_blocks(dep.deploy_block)
    assert [b.header.height for b in blocks] == [0, 1, 2]
    assert all(b.header.miner == b"\x0f" * 20 for b in blocks[1:])
    for b, s in zip(blocks[1:], served):
        assert compute_segment_root(decode_segment(bytes(s.segment))) == b.header.segment_root
        assert b.header.correct_after >= blocks[b.header.height - 1].header.correct_after  # the monotone tip
