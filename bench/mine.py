"""Mining: attempts per second, time to a valid block against k, and useful work, in one run.

    .venv/bin/python bench/mine.py [--device cpu|cuda] [--seconds 8] [--repeats 3] [--tasks digits-cnn,cifar10-resnet18]
        [--ks 4,8,...,32] [--cap 60] [--seeds 3] [--modes faithful,fast,guided] [--useful-seconds 15] [--threads N]

Throughput: three loops per task, each trying attempts from the same model on random mini-batches:
  reference  the authors' per-attempt work: one SGD step, the required weights read in a Python
             loop, and the whole state dict saved to disk with torch.save on every attempt;
  faithful   our Algorithm 1 (prover/faithful.py): a kept SGD step per attempt, the required
             weights gathered in one indexing op, W kept in memory;
  fast       our batched search (prover/fast.py): C candidates per pass, then one training step.
k is set high enough that no attempt succeeds, so every loop does only its steady-state work.

Time to a valid block (--ks): for each k and each of --seeds requirement sets (the same R for every
mode), each mode mines from the same start model (genesis plus --warmup plain steps) until it
finds a proof that meets R with the margin and passes the robust accuracy check, or --cap seconds
pass. A proof found is re-checked with pol_core (requirements and accuracy). Medians over seeds; a
median that is a timeout is a bound ("> cap"), and a mode is not run at higher k after one, except
at the k of --always-at (default 16, the k of issue 14's goal).
Guided mode (prover/guided.py) also reports where its time goes: set-up, search, exact checks.

Useful work: test accuracy gained after T seconds of mining (k = 64, never met, so every round
searches and trains) against T seconds of plain training (batch S, task lr) on the same hardware,
for fast mode and both guided set-ups; and for guided mining that finds blocks back to back at
each of --chain-ks, each block's step applied, as on a chain.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from pol_core.keccak import keccak256
from pol_core.requirements import compute_requirements, is_requirements_met
from pol_core.step import RobustCount, compute_correct, process_update
from pol_core.tasks import load_task
from pol_core.tasks.cifar import write_cifar_like
from pol_core.weights import get_flat_params
from prover.fast import BatchedSearch
from prover.faithful import mine_faithful
from prover.guided import GuidedConfig, GuidedSearcher
from prover.search import FastSearcher, make_searcher

K = 64  # never met: ~2^-64 per attempt


def read_by_walking(params, reqs) -> list[float]:
    """The reference reads each required weight by walking the parameters in Python."""
    out = []
    for r in reqs:
        i = r // 2
        for p in params:
            if i < p.numel():
                out.append(p.reshape(-1)[i].item())
                break
            i -= p.numel()
    return out


def reference_loop(task, model, reqs, seconds: float, device, path: str) -> float:
    """The authors' miner, per attempt: step, Python-loop reads, torch.save of the state dict."""
    opt = torch.optim.SGD(model.parameters(), lr=task.config.lr)
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        idx = torch.randperm(task.train_size, generator=gen)[: task.config.batch_size].tolist()
        x, y = task.batch(idx, device)
        before = read_by_walking(params, reqs)
        model.train()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        after = read_by_walking(params, reqs)
        del before, after  # read, as the reference does, and not used further here
        torch.save(model.state_dict(), path)
        n += 1
    return n / (time.perf_counter() - t0)


def faithful_loop(task, model, reqs, seconds: float, device) -> float:
    gen = torch.Generator().manual_seed(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        mine_faithful(task, model, reqs, gen, 8, device)
        n += 8
    return n / (time.perf_counter() - t0)


def fast_loop(task, model, reqs, seconds: float, device, candidates: int, dtype) -> float:
    s = FastSearcher(task, model, reqs, torch.Generator().manual_seed(0), device, candidates, dtype)
    s.round()  # warm-up
    s.attempts = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s.round()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return s.attempts / (time.perf_counter() - t0)


def flops_per_attempt(task, model, device) -> int:
    x, y = task.batch(list(range(task.config.batch_size)), device)
    with FlopCounterMode(display=False) as fc:
        process_update(model, x, y, 0.0)
    return fc.get_total_flops()


def plain_gain(task, seconds: float, device, seed: int) -> int:
    """Test answers gained by T seconds of plain batch-S SGD at the task's lr from genesis."""
    x_test, y_test, eb = task.test_x.to(device), task.test_y.to(device), task.config.eval_batch
    model = task.new_model().to(device)
    base = compute_correct(model, x_test, y_test, eb)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        idx = torch.randperm(task.train_size, generator=gen)[: task.config.batch_size].tolist()
        process_update(model, *task.batch(idx, device), task.config.lr)
    return compute_correct(model, x_test, y_test, eb) - base


def mined_gain(task, seconds: float, device, make, seed: int, chain_k: int | None = None) -> tuple[int, int]:
    """Test answers gained by T seconds of mining from genesis, and blocks found.

    make(model, reqs, gen) builds the searcher. chain_k None: k = 64, never met. Otherwise blocks
    are found back to back at k = chain_k, each block's own step applied as the chain would."""
    x_test, y_test, eb = task.test_x.to(device), task.test_y.to(device), task.config.eval_batch
    model = task.new_model().to(device)
    base = compute_correct(model, x_test, y_test, eb)
    gen = torch.Generator().manual_seed(seed)
    blocks, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        k = K if chain_k is None else chain_k
        reqs = compute_requirements(keccak256(b"useful" + bytes([seed, blocks % 256])), k, task.num_params)
        searcher = make(model, reqs, gen)
        while time.perf_counter() - t0 < seconds:
            found = searcher.round()
            if found is not None:
                model.load_state_dict(found.state)
                process_update(model, *task.batch(found.indices, device), task.config.lr)
                blocks += 1
                break
    return compute_correct(model, x_test, y_test, eb) - base, blocks


def useful_work(task, seconds: float, device, candidates: int, repeats: int, chain_ks: list[int], guided_cfg) -> None:
    makers = {
        "fast": lambda m, r, g: FastSearcher(task, m, r, g, device, candidates),
        "guided (fused)": lambda m, r, g: GuidedSearcher(task, m, r, g, device, guided_cfg),
        "guided (separate)": lambda m, r, g: GuidedSearcher(task, m, r, g, device, replace(guided_cfg, setup="separate")),
    }
    rows = []  # (label, gains over repeats, blocks)
    plain = [plain_gain(task, seconds, device, seed) for seed in range(repeats)]
    for label, make in makers.items():
        runs = [mined_gain(task, seconds, device, make, seed) for seed in range(repeats)]
        rows.append((f"{label}, k = {K}", runs))
    for chain_k in chain_ks:
        for label in ("guided (fused)", "guided (separate)"):
            runs = [mined_gain(task, seconds, device, makers[label], seed, chain_k) for seed in range(repeats)]
            rows.append((f"{label}, blocks at k = {chain_k}", runs))
    p = statistics.median(plain)
    print(f"\nuseful work after {seconds}s from genesis (median of {repeats}): plain training +{p} correct "
          f"(runs {plain}); goal: ratio >= 0.8")
    print("| miner | gain (median) | ratio | blocks (median) | runs (gain, blocks) |\n|---|---:|---:|---:|---|")
    for label, runs in rows:
        g = statistics.median(r[0] for r in runs)
        b = statistics.median(r[1] for r in runs)
        print(f"| {label} | +{g} | {g / max(p, 1):.2f} | {b} | {runs} |")


def time_to_block(task, mode: str, start: dict, reqs, cap: float, device, seed: int, candidates: int,
                  guided_cfg, r_only: bool) -> tuple[float, bool, int, GuidedSearcher | None]:
    """Seconds until `mode` finds a valid proof from `start`, or the cap; and its exact checks."""
    model = task.model_from_state(start, device)
    gen = torch.Generator().manual_seed(seed)
    if mode == "guided":
        searcher = GuidedSearcher(task, model, reqs, gen, device, guided_cfg)
    else:
        searcher = make_searcher(mode, task, model, reqs, gen, device, candidates)
    t0 = time.perf_counter()
    while True:
        found = searcher.round()
        elapsed = time.perf_counter() - t0
        if found is not None:
            check_proof(task, found, reqs, r_only)
            return elapsed, True, found.attempts, searcher if mode == "guided" else None
        if elapsed > cap:
            return elapsed, False, searcher.attempts, searcher if mode == "guided" else None


def check_proof(task, found, reqs, r_only: bool = False) -> None:
    """The benchmark counts only blocks pol_core would accept: R met and accuracy improved."""
    model = task.model_from_state(found.state)
    w0 = get_flat_params(model)
    before = compute_correct(model, task.test_x, task.test_y, task.config.eval_batch)
    process_update(model, *task.batch(found.indices), task.config.lr)
    if not is_requirements_met(w0, get_flat_params(model), reqs):
        raise RuntimeError(f"proof {found.indices} does not meet R")
    if not r_only and not compute_correct(model, task.test_x, task.test_y, task.config.eval_batch) > before:
        raise RuntimeError(f"proof {found.indices} does not improve accuracy")


def drop_accuracy_rule() -> None:
    """--r-only: every mode takes the accuracy rule as met, so the figures time the puzzle alone.
    (On a generated task with a 100-image test set, one step at ResNet-18's lr rarely changes a
    single test prediction, and the accuracy rule, not R, then decides the time to a block.)"""
    import prover.faithful
    import prover.guided
    import prover.search

    def always(task, model, before_state, device):
        return True, 0, 1

    prover.faithful.is_robust_proof = prover.search.is_robust_proof = always
    prover.guided.is_robustly_improved = lambda before, after: True
    prover.guided.GuidedSearcher._robust_count = lambda self: RobustCount(0, 0, 0)  # no test-set pass


def exact_oriented(task, model, reqs, state, cands, device, width: int = 256) -> torch.Tensor:
    """(len(cands), k) oriented changes of each candidate's S-step from `state`, with each
    candidate's own BatchNorm statistics (fast.py's batched pass), `width` candidates per pass."""
    out = []
    for lo in range(0, len(cands), width):
        part = cands[lo : lo + width]
        model.load_state_dict(state)
        flat = [i for c in part for i in c]
        out.append(BatchedSearch(task, model, reqs, len(part)).oriented_deltas(*task.batch(flat, device), train=False))
    return torch.cat(out)


def bench_predictor(task, device, start: dict, ks, seeds, n: int = 1024) -> None:
    """How good the predictor is: the exact pass rate of its n best-scored subsets against n
    random subsets of the same samples, and how often its predicted sign is the exact one."""
    margin, s = task.config.delta_margin, task.config.batch_size
    print(f"\npredictor quality, {task.name}: exact R pass rate (margin {margin:g}) of the {n} best-scored S-subsets "
          f"against {n} random S-subsets of the same samples, from the start model; sums over {len(seeds)} R per k")
    print("| k | set-up | predicted subsets | of which pass | random pass | advantage per exact check | sign agreement "
          "(random subsets) | correlation |\n|---|---|---:|---:|---:|---:|---:|---:|")
    for k in ks:
        for setup in ("fused", "separate"):
            npred = npass = nrand = 0
            agree, corr = [], []
            for seed in seeds:
                reqs = compute_requirements(keccak256(b"ttb" + bytes([k, seed])), k, task.num_params)
                model = task.model_from_state(start, device)
                gen = torch.Generator().manual_seed(seed)
                g = GuidedSearcher(task, model, reqs, gen, device, GuidedConfig(setup=setup))
                if setup == "fused":
                    idx = torch.randperm(task.train_size, generator=gen)[: g.train_batch].sort().values
                    grads = g.train_step(idx, capture=True)
                else:
                    idx = torch.arange(task.train_size)
                    grads = g.setup_separate(idx)
                cands = g.choose(grads, idx, limit=n)
                npred += len(cands)
                if cands:
                    npass += int((exact_oriented(task, model, reqs, start, cands, device) > margin).all(1).sum())
                pos = torch.stack([torch.randperm(idx.numel(), generator=gen)[:s].sort().values for _ in range(n)])
                rand = [tuple(int(i) for i in idx[row]) for row in pos]  # (n, S) training indices
                exact = exact_oriented(task, model, reqs, start, rand, device)  # (n, k)
                nrand += int((exact > margin).all(1).sum())
                pred = (-task.config.lr * grads.float().cpu() * g.sign)[pos].mean(1)  # (n, k)
                decided = exact.abs() > 1e-7
                agree.append(float(((pred > 0) == (exact > 0))[decided].float().mean()))
                corr.append(float(torch.corrcoef(torch.stack([pred.flatten(), exact.flatten()]))[0, 1]))
            total = n * len(seeds)
            rate_p = npass / npred if npred else 0.0
            rate_r = nrand / total
            adv = (f"{rate_p / rate_r:.0f}x" if nrand else f"> {rate_p * total:.0f}x") if npass else "-"
            rand_text = f"{nrand}/{total}" + ("" if nrand else f" (2^-{k} = {2.0**-k:.1e})")
            print(f"| {k} | {setup} | {npred} | {npass} ({100 * rate_p:.1f}%) | {rand_text} | {adv} | "
                  f"{statistics.mean(agree):.3f} | {statistics.mean(corr):.3f} |")


def fmt_seconds(times: list[float], found: list[bool], cap: float) -> tuple[float, str]:
    """Median over seeds, a timeout counting as infinite; a bound when the median timed out."""
    med = statistics.median(t if f else math.inf for t, f in zip(times, found))
    return med, (f"> {cap:.0f} s" if math.isinf(med) else f"{med:.2f} s")


def compute_start_state(task, device, warmup: int) -> tuple[dict, int]:
    """Genesis plus `warmup` plain steps, and its test count: where every time-to-block run starts."""
    model = task.new_model().to(device)
    gen = torch.Generator().manual_seed(1234)
    for _ in range(warmup):
        idx = torch.randperm(task.train_size, generator=gen)[: task.config.batch_size].tolist()
        process_update(model, *task.batch(idx, device), task.config.lr)
    acc = compute_correct(model, task.test_x.to(device), task.test_y.to(device), task.config.eval_batch)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, acc


def bench_time_to_block(task, device, ks, modes, cap, seeds, candidates, guided_cfg, start, acc, warmup,
                        always: set[int], r_only: bool) -> None:
    what = "an R-passing step (accuracy rule dropped)" if r_only else "a valid block"
    print(f"\ntime to {what}, {task.name} on {device} ({torch.get_num_threads()} threads), start: genesis + "
          f"{warmup} plain steps ({acc}/{task.test_x.shape[0]} correct); {len(seeds)} R per k, the same for every "
          f"mode; cap {cap:.0f} s; fast C = {candidates}, guided {guided_cfg}")
    head = " | ".join(f"{m} (median, found, runs)" for m in modes)
    print(f"| k | {head} | fast / guided |\n|---|" + "---|" * len(modes) + "---:|")
    stopped: dict[str, int] = {}
    phases = {}  # k -> guided phase totals
    best_k = None
    for k in ks:
        cells, med = [], {}
        reqs_list = [compute_requirements(keccak256(b"ttb" + bytes([k, s])), k, task.num_params) for s in seeds]
        for mode in modes:
            if mode in stopped and k not in always:
                cells.append(f"not run (> {cap:.0f} s at k = {stopped[mode]})")
                med[mode] = (math.inf, True)
                continue
            runs = [time_to_block(task, mode, start, reqs, cap, device, s, candidates, guided_cfg, r_only)
                    for s, reqs in zip(seeds, reqs_list)]
            m, text = fmt_seconds([r[0] for r in runs], [r[1] for r in runs], cap)
            med[mode] = (m, False)
            found = sum(r[1] for r in runs)
            detail = ", ".join(f"{r[0]:.2f}{'' if r[1] else '!'}" for r in runs)
            cells.append(f"{text}, {found}/{len(runs)}, [{detail}]")
            if math.isinf(m):
                stopped.setdefault(mode, k)
            if mode == "guided":
                if not math.isinf(m):
                    best_k = k
                tot = {"rounds": 0, "setup": 0.0, "search": 0.0, "check": 0.0, "train": 0.0, "attempts": 0,
                       "guided": 0, "fallback": 0}
                for r in runs:
                    g = r[3]
                    tot["rounds"] += g.rounds
                    tot["attempts"] += g.attempts
                    tot["guided"] += g.guided_attempts
                    tot["fallback"] += g.fallback_rounds
                    for name in ("setup", "search", "check", "train"):
                        tot[name] += getattr(g.times, name)
                phases[k] = tot
        ratio = ""
        if "fast" in med and "guided" in med:
            f, g = med["fast"][0], med["guided"][0]
            if not math.isinf(g):
                ratio = f"> {cap / g:.0f}x" if math.isinf(f) else f"{f / g:.0f}x"
        print(f"| {k} | " + " | ".join(cells) + f" | {ratio} |")
    print("(a run marked ! found nothing within the cap; its time is when it stopped)")
    if phases:
        print(f"largest k at which guided's median time to a block is under {cap:.0f} s: {best_k}")
        print("\nguided: where the time goes (all seeds), per round; an exact check is one candidate of the batched pass")
        print("| k | rounds | set-up ms | search ms | exact pass ms | per exact check ms | train ms | predicted / "
              "checked | fallback rounds |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for k, t in phases.items():
            n = max(t["rounds"], 1)
            print(f"| {k} | {t['rounds']} | {1e3 * t['setup'] / n:.1f} | {1e3 * t['search'] / n:.1f} | "
                  f"{1e3 * t['check'] / n:.1f} | {1e3 * t['check'] / max(t['attempts'], 1):.2f} | "
                  f"{1e3 * t['train'] / n:.1f} | {t['guided']} / {t['attempts']} | {t['fallback']} |")


def bench_task(task, device, seconds, repeats, candidates, dtype):
    reqs = compute_requirements(keccak256(b"bench"), K, task.num_params)
    fresh = lambda: task.new_model().to(device)  # noqa: E731
    rates = {"reference": [], "faithful": [], "fast": []}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "state.pt")
        for _ in range(repeats):  # interleaved, so drift on a shared machine hits all three
            rates["reference"].append(reference_loop(task, fresh(), reqs, seconds, device, path))
            rates["faithful"].append(faithful_loop(task, fresh(), reqs, seconds, device))
            rates["fast"].append(fast_loop(task, fresh(), reqs, seconds, device, candidates, dtype))
    med = {k: statistics.median(v) for k, v in rates.items()}
    flops = flops_per_attempt(task, fresh(), device)
    print(f"\n{task.name} on {device} ({torch.get_num_threads()} threads), |W| = {task.num_params:,}, "
          f"C = {candidates}, {seconds}s windows, median of {repeats}")
    print("| loop | attempts/s (median) | runs | vs reference | achieved GFLOP/s |\n|---|---:|---|---:|---:|")
    for k, v in med.items():
        runs = ", ".join(f"{r:.1f}" for r in rates[k])
        print(f"| {k} | {v:.1f} | {runs} | {v / med['reference']:.1f}x | {v * flops / 1e9:.1f} |")
    print(f"FLOPs per attempt (forward + backward of S = {task.config.batch_size}): {flops / 1e6:.1f} MFLOP")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=8, help="throughput window; 0 skips the throughput table")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tasks", default="digits-cnn,cifar10-resnet18")
    ap.add_argument("--candidates", type=int, default=None)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the fast search (CUDA)")
    ap.add_argument("--useful-seconds", type=float, default=15, help="0 skips useful work (digits-cnn only)")
    ap.add_argument("--chain-ks", default="16,24", help="useful work: k of the back-to-back blocks")
    ap.add_argument("--ks", default="", help="time to a block at these k, e.g. 4,8,12,16,20,24,28,32")
    ap.add_argument("--modes", default="faithful,fast,guided")
    ap.add_argument("--predictor-ks", default="", help="predictor quality at these k, e.g. 8,16,24")
    ap.add_argument("--cap", type=float, default=60, help="seconds per (mode, k, R) before giving up")
    ap.add_argument("--always-at", default="16", help="k at which every mode runs, even after timeouts below")
    ap.add_argument("--seeds", type=int, default=3, help="requirement sets per k")
    ap.add_argument("--warmup", type=int, default=50, help="plain steps from genesis to the start model")
    ap.add_argument("--guided-candidates", type=int, default=None, help="exact checks per guided round")
    ap.add_argument("--train-j", type=int, default=None, help="guided training batch 4^j * S (default: largest)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (on a shared, loaded machine 1 avoids "
                    "OpenMP threads waiting for each other)")
    ap.add_argument("--r-only", action="store_true", help="time to an R-passing step: the accuracy rule is "
                    "taken as met in every mode (see drop_accuracy_rule)")
    args = ap.parse_args()
    if args.r_only:
        drop_accuracy_rule()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.bf16 else None
    ks = [int(k) for k in args.ks.split(",") if k]
    pks = [int(k) for k in args.predictor_ks.split(",") if k]
    modes = [m for m in args.modes.split(",") if m]
    for name in args.tasks.split(","):
        with tempfile.TemporaryDirectory() as d:
            if name == "digits-cnn":
                task, c, gc, j = load_task(name), args.candidates or 256, args.guided_candidates or 64, args.train_j
            else:
                write_cifar_like(d, n_train_per_file=64, n_test=100)  # 320 train, 100 test images
                task = load_task(name, d)
                c = args.candidates or (512 if device.type == "cuda" else 16)
                gc = args.guided_candidates or (256 if device.type == "cuda" else 16)
                # On a CPU a 256-image ResNet-18 step takes seconds: train on 4^2 * S = 64 instead.
                j = args.train_j if args.train_j is not None or device.type == "cuda" else 2
            guided_cfg = GuidedConfig(candidates=gc, train_j=j)
            if args.seconds:
                bench_task(task, device, args.seconds, args.repeats, c, dtype)
            seeds = list(range(args.seeds))
            if ks or pks:
                start, acc = compute_start_state(task, device, args.warmup)
            if pks:
                bench_predictor(task, device, start, pks, seeds)
            if ks:
                always = {int(k) for k in args.always_at.split(",") if k}
                bench_time_to_block(task, device, ks, modes, args.cap, seeds, c, guided_cfg, start, acc, args.warmup,
                                    always, args.r_only)
            if args.useful_seconds and name == "digits-cnn":
                chain_ks = [int(k) for k in args.chain_ks.split(",") if k]
                useful_work(task, args.useful_seconds, device, c, args.repeats, chain_ks, guided_cfg)


if __name__ == "__main__":
    main()
