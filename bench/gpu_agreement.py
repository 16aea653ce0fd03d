"""GPU miner against CPU verifier: how often do they disagree about a proof, and why (issue 11, item 5).

    python bench/gpu_agreement.py [--proofs 1000] [--k 4] [--miner-device cuda] [--miner-mode strict]
                                  [--workers N] [--time-cap 240] [--out FILE] [--allow-torch-version]
    python bench/gpu_agreement.py --proofs 20 --miner-device cpu --workers 2   # self-check: all must agree

The miner (this process, on --miner-device) starts each proof from the chain's current W, derives R at
difficulty k from a seed chain (seed_{i+1} = keccak256(seed_i)), and tries random mini-batches P until
its own step meets R by the verifier's rule (is_requirements_met on W' - W). Every attempt, accepted or
not, goes to a pool of CPU verifier processes (one thread each; dispatch pinned where pol_core.portable
exists), which recompute W', the gradient at each required weight, the R verdict and the weights hash,
and for the accepted attempt the test-set counts before and after. The chain advances along the CPU's
W' (canonical), then --train-between plain steps, so the proofs cover many states and accuracies.

Imports only pol_core's torch-side modules: no pol.v1, grpc or web3, and not pol_core.header/rules,
whose eth_utils needs pydantic, which a bare GPU machine with the carried wheels lacks.
"""
from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import platform
import sys
import time
import warnings
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # lets deterministic cuBLAS run; read at first use

import torch  # noqa: E402
from torch import nn  # noqa: E402

from pol_core.keccak import keccak256  # noqa: E402
from pol_core.requirements import compute_required_deltas, compute_requirements, is_requirements_met, requirement_index  # noqa: E402
from pol_core.step import compute_correct, compute_robust_count, compute_step_lr, enable_deterministic_mode, process_step  # noqa: E402
from pol_core.tasks import load_task  # noqa: E402
from pol_core.tasks.spec import Task  # noqa: E402
from pol_core.types import Difficulty, Hash32, Requirement  # noqa: E402
from pol_core.weights import compute_weights_hash, get_flat_params, get_state  # noqa: E402

TASK = "digits-cnn"
with warnings.catch_warnings():  # the prover never calls enable_deterministic_mode: these are its CUDA settings
    warnings.simplefilter("ignore")
    PROVER_CUDA_SETTINGS = {
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark, "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }


@dataclass(frozen=True)
class Config:
    proofs: int = 1000
    k: int = 2  # digits-cnn needs ~14 attempts per proof at k=2, ~117 at k=4 (skewed Linear gradients)
    miner_device: str = "cpu"
    miner_mode: str = "strict"  # strict: the verifier's settings on the miner too; prover-defaults: torch's own
    workers: int = os.cpu_count() or 1
    seed: str = "pol-gpu-agreement"
    train_between: int = 2  # plain canonical steps after each proof, so accuracy climbs through the run
    max_attempts: int = 1024  # a proof not found by then is skipped (some R need hundreds)
    time_cap_s: float = 0.0  # stop starting proofs after this many seconds (0: no cap)
    allow_torch_version: bool = False  # pin with another torch release than pol_core.portable's
    max_details: int = 200  # disagreement records kept in the JSON


@dataclass(frozen=True)
class StepOutcome:
    """One side's view of one attempt."""

    met: bool  # R met by the verifier's rule on this side's W' - W
    oriented: tuple[float, ...]  # (k,) change of each required weight, positive = as required
    grads: tuple[float, ...]  # (k,) gradient at each required weight
    new_hash: bytes  # keccak of W'


@dataclass(frozen=True)
class Job:
    """One proof, as the miner saw it; states travel as numpy arrays (plain pickles, no shared memory)."""

    number: int
    reqs: tuple[Requirement, ...]
    state: dict[str, np.ndarray]  # W
    attempts: tuple[tuple[tuple[int, ...], StepOutcome], ...]  # the last one met R on the miner
    miner_state: dict[str, np.ndarray]  # the miner's W'
    miner_grad: np.ndarray  # (|W|,) the miner's gradient for the accepted P
    miner_counts: tuple[int, int]  # correct before, after, evaluated by the miner
    canonical_hash: bytes  # W' as this process computed it on CPU (the chain's W')


class GradTap:
    """Keeps each parameter's gradient as backward leaves it: process_update clears it after the step."""

    def __init__(self, model: nn.Module):
        self.params = list(model.parameters())
        self.grads: dict[int, torch.Tensor] = {}
        for i, p in enumerate(self.params):
            p.register_post_accumulate_grad_hook(lambda p, i=i: self.grads.__setitem__(i, p.grad.detach().reshape(-1).clone()))

    def flat(self) -> torch.Tensor:
        return torch.cat([self.grads[i] for i in range(len(self.params))]).cpu()  # (|W|,)


def compute_step_outcome(task: Task, model: nn.Module, tap: GradTap, indices: tuple[int, ...], reqs: tuple[Requirement, ...],
                         device: torch.device) -> tuple[StepOutcome, torch.Tensor, dict[str, torch.Tensor]]:
    """The protocol's step on `model` (holding W) in place: the same code for the miner and the verifier."""
    before = get_flat_params(model)
    process_step(model, *task.batch(indices, device), task.config)
    after = get_flat_params(model)
    grad = tap.flat()
    state = get_state(model)
    idx = [requirement_index(r) for r in reqs]
    return StepOutcome(
        met=is_requirements_met(before, after, reqs, allow_equal=task.config.allow_equal),
        oriented=tuple(compute_required_deltas(before, after, reqs).tolist()),
        grads=tuple(grad[idx].tolist()),
        new_hash=bytes(compute_weights_hash(state)),
    ), grad, state


def to_numpy(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in state.items()}


def to_torch(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def setup_cpu_verifier(allow_torch_version: bool) -> dict[str, Any]:
    """The verifier's CPU settings in this process: pinned dispatch where pol_core.portable exists (before
    any tensor operation), then deterministic mode with one thread."""
    portable: Any
    try:
        portable = importlib.import_module("pol_core.portable")
    except ModuleNotFoundError as e:
        if e.name != "pol_core.portable":
            raise
        portable = None
    info: dict[str, Any] = {"pinned": portable is not None}
    if portable is not None:
        installed = torch.__version__.split("+")[0]
        if allow_torch_version and installed != portable.TORCH_VERSION:
            info["torch_version_check_skipped"] = f"pinned for {portable.TORCH_VERSION}, running {installed}"
            portable.TORCH_VERSION = installed  # skips only the release check; every other switch is checked
        portable.pin_cpu_dispatch()
    enable_deterministic_mode()
    if portable is not None:
        info["dispatch"] = portable.check_cpu_dispatch().describe()
    else:
        info["note"] = "unpinned: pol_core.portable is not in this tree; CPU kernels follow torch's default dispatch"
    info.update(threads=torch.get_num_threads(), cpu_capability=torch.backends.cpu.get_cpu_capability(),
                mkldnn=bool(torch.backends.mkldnn.enabled))
    return info


def setup_miner(mode: str) -> dict[str, Any]:
    """The miner's device settings, after setup_cpu_verifier: `strict` keeps the verifier's (no TF32,
    deterministic kernels; a CUDA op without one warns instead of failing); `prover-defaults` restores
    torch's own, as the shipped prover runs (cuDNN may use TF32 for convolutions)."""
    if mode == "prover-defaults":
        s = PROVER_CUDA_SETTINGS
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic = s["cudnn_allow_tf32"], s["cudnn_deterministic"]
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32 = s["cudnn_benchmark"], s["matmul_allow_tf32"]
        torch.use_deterministic_algorithms(s["deterministic_algorithms"])
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return {"cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}


def draw_indices(rng: np.random.Generator, task: Task) -> tuple[int, ...]:
    return tuple(int(i) for i in rng.choice(task.train_size, task.config.batch_size, replace=False))


def mine(cfg: Config, task: Task, submit: Any, t0: float) -> dict[str, Any]:
    """The miner's loop; hands each proof to `submit` and advances the chain along the CPU's W'."""
    device = torch.device(cfg.miner_device)
    miner, canon = task.new_model().to(device), task.new_model()
    miner_tap, canon_tap = GradTap(miner), GradTap(canon)
    test_x, test_y = task.test_x.to(device), task.test_y.to(device)
    state = {k: v.clone() for k, v in task.genesis_state.items()}
    seed = keccak256(cfg.seed.encode())
    stats: dict[str, Any] = {"proofs": 0, "attempts": 0, "not_found": 0, "stopped_by_time_cap": False}
    for number in range(cfg.proofs):
        if cfg.time_cap_s and time.perf_counter() - t0 > cfg.time_cap_s:
            stats["stopped_by_time_cap"] = True
            break
        seed = keccak256(seed)
        reqs = tuple(compute_requirements(Hash32(seed), Difficulty(cfg.k), task.num_params))
        rng = np.random.default_rng(int.from_bytes(seed[:8], "big"))
        w_dev = {k: v.to(device) for k, v in state.items()}
        attempts: list[tuple[tuple[int, ...], StepOutcome]] = []
        for _ in range(cfg.max_attempts):
            indices = draw_indices(rng, task)
            miner.load_state_dict(w_dev)
            outcome, grad, miner_state = compute_step_outcome(task, miner, miner_tap, indices, reqs, device)
            attempts.append((indices, outcome))
            if outcome.met:
                break
        stats["attempts"] += len(attempts)
        if not attempts[-1][1].met:
            stats["not_found"] += 1
            continue
        after = compute_correct(miner, test_x, test_y, task.config.eval_batch)
        miner.load_state_dict(w_dev)
        before = compute_correct(miner, test_x, test_y, task.config.eval_batch)
        canon.load_state_dict(state)
        canonical, _, _ = compute_step_outcome(task, canon, canon_tap, attempts[-1][0], reqs, torch.device("cpu"))
        submit(Job(number, reqs, to_numpy(state), tuple(attempts), to_numpy(miner_state), grad.numpy(),
                   (before, after), canonical.new_hash))
        for _ in range(cfg.train_between):  # canon holds the canonical W'
            process_step(canon, *task.batch(draw_indices(rng, task)), task.config)
        state = get_state(canon)
        stats["proofs"] += 1
        if stats["proofs"] % 100 == 0:
            print(f"  {stats['proofs']} proofs, {stats['attempts']} attempts, {time.perf_counter() - t0:.0f} s", flush=True)
    return stats


def classify_flip(g_miner: float, g_cpu: float, d_miner: float, d_cpu: float) -> str:
    """Why one required weight moved as required on one side only."""
    if g_miner == 0.0 or g_cpu == 0.0:
        return "zero gradient on one side"
    if np.sign(g_miner) != np.sign(g_cpu):
        return "sign of a near-zero gradient"
    if d_miner == 0.0 or d_cpu == 0.0:
        return "update below half an ulp of the weight (W' = W on one side)"
    return "other"


class Verifier:
    """The CPU side of every comparison; one per worker process."""

    def __init__(self, task: Task):
        self.task, self.model = task, task.new_model()
        self.tap = GradTap(self.model)
        self.lr = compute_step_lr(task.config, task.config.batch_size)
        self.names = [(n, p.numel()) for n, p in self.model.named_parameters()]

    def locate(self, index: int) -> str:
        for name, size in self.names:
            if index < size:
                return f"{name}[{index}]"
            index -= size
        raise IndexError(index)

    def flip_record(self, job: Job, attempt: int, j: int, w: float, m: StepOutcome, c: StepOutcome) -> dict[str, Any]:
        g = max(abs(m.grads[j]), abs(c.grads[j]))
        ulp_w = float(np.spacing(np.float32(abs(w))))
        return {"proof": job.number, "attempt": attempt, "accepted": attempt == len(job.attempts) - 1, "coordinate": int(requirement_index(job.reqs[j])),
                "param": self.locate(int(requirement_index(job.reqs[j]))), "weight": w, "grad_miner": m.grads[j], "grad_cpu": c.grads[j],
                "delta_miner": m.oriented[j], "delta_cpu": c.oriented[j], "grad_ulp": float(np.spacing(np.float32(g))),
                "grad_diff_in_ulps": abs(m.grads[j] - c.grads[j]) / float(np.spacing(np.float32(g))) if g else 0.0,
                "lr_grad_over_weight_ulp": self.lr * g / ulp_w,
                "cause": classify_flip(m.grads[j], c.grads[j], m.oriented[j], c.oriented[j])}

    def verify(self, job: Job) -> dict[str, Any]:
        task, model = self.task, self.model
        state = to_torch(job.state)
        model.load_state_dict(state)
        w = get_flat_params(model)[[requirement_index(r) for r in job.reqs]].tolist()
        out: dict[str, Any] = {"proof": job.number, "attempts": len(job.attempts), "hash_equal": 0, "met_miner_only": 0,
                               "met_cpu_only": 0, "sign_flips": 0, "flips": [], "causes": Counter()}
        for a, (indices, m) in enumerate(job.attempts):
            model.load_state_dict(state)
            c, grad, new_state = compute_step_outcome(task, model, self.tap, indices, job.reqs, torch.device("cpu"))
            out["hash_equal"] += c.new_hash == m.new_hash
            out["met_miner_only"] += m.met and not c.met
            out["met_cpu_only"] += c.met and not m.met
            for j in range(len(job.reqs)):
                if np.sign(m.oriented[j]) != np.sign(c.oriented[j]):
                    out["sign_flips"] += 1
                    out["flips"].append(self.flip_record(job, a, j, w[j], m, c))
                    out["causes"][out["flips"][-1]["cause"]] += 1
        # model holds the CPU's W' for the accepted (last) attempt
        out["accepted_met_cpu"] = c.met
        out["accepted_hash_equal"] = c.new_hash == m.new_hash
        out["canonical_equal"] = c.new_hash == job.canonical_hash
        out.update(self.compare_states(to_torch(job.miner_state), new_state, torch.from_numpy(job.miner_grad), grad))
        after = compute_correct(model, task.test_x, task.test_y, task.config.eval_batch)
        fragile_after = self.fragile(model) if after != job.miner_counts[1] else None
        model.load_state_dict(state)
        before = compute_correct(model, task.test_x, task.test_y, task.config.eval_batch)
        fragile_before = self.fragile(model) if before != job.miner_counts[0] else None
        out["counts_cpu"], out["counts_miner"] = (before, after), job.miner_counts
        out["fragile_cpu"] = {"before": fragile_before, "after": fragile_after}
        return out

    def fragile(self, model: nn.Module) -> dict[str, int]:
        """Predictions within the task's logit margin of flipping, explaining a count disagreement."""
        r = compute_robust_count(model, self.task.test_x, self.task.test_y, self.task.config.eval_batch, self.task.config.logit_margin)
        return {"fragile_correct": r.fragile_correct, "fragile_wrong": r.fragile_wrong}

    def compare_states(self, miner: dict[str, torch.Tensor], cpu: dict[str, torch.Tensor], g_miner: torch.Tensor,
                       g_cpu: torch.Tensor) -> dict[str, Any]:
        """How far the two W' are apart, and where the difference starts."""
        param_names = {n for n, _ in self.names}
        max_abs, max_ulps, params_equal, buffers_equal = 0.0, 0.0, True, True
        for name, a in miner.items():
            b = cpu[name]
            equal = torch.equal(a, b)
            params_equal &= equal or name not in param_names
            buffers_equal &= equal or name in param_names
            if a.is_floating_point() and not equal:
                diff = (a.double() - b.double()).abs()  # same shape
                max_abs = max(max_abs, float(diff.max()))
                ulp = torch.from_numpy(np.spacing(np.maximum(a.abs().numpy(), b.abs().numpy()))).double()
                max_ulps = max(max_ulps, float((diff / ulp).max()))
        cause = None
        if not (params_equal and buffers_equal):
            cause = ("gradient arithmetic (forward/backward kernels)" if not torch.equal(g_miner, g_cpu)
                     else "update arithmetic (same gradient, W - lr*g rounds differently)" if not params_equal
                     else "BatchNorm running statistics")
        return {"max_abs_diff": max_abs, "max_ulp_diff": max_ulps, "hash_cause": cause}


_VERIFIER: Verifier | None = None
_SETUP: dict[str, Any] = {}


def init_worker(allow_torch_version: bool) -> None:
    global _VERIFIER
    _SETUP.update(setup_cpu_verifier(allow_torch_version))
    _VERIFIER = Verifier(load_task(TASK))


def verify_job(job: Job) -> dict[str, Any]:
    if _VERIFIER is None:
        raise RuntimeError("init_worker did not run in this process")
    return _VERIFIER.verify(job)


def worker_setup() -> dict[str, Any]:
    return dict(_SETUP)


def summarise(cfg: Config, reports: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(reports)
    flips = [f for r in reports for f in r["flips"]]
    count_diff = [{"proof": r["proof"], "miner": r["counts_miner"], "cpu": r["counts_cpu"], "fragile_cpu": r["fragile_cpu"],
                   "weights_equal": r["accepted_hash_equal"]} for r in reports if tuple(r["counts_miner"]) != tuple(r["counts_cpu"])]
    attempts = [r["attempts"] for r in reports]
    correct = [r["counts_cpu"][0] for r in reports]
    return {
        "accepted": {
            "proofs": n, "weights_hash_equal": sum(r["accepted_hash_equal"] for r in reports),
            "r_verdict_disagreements": sum(not r["accepted_met_cpu"] for r in reports),
            "count_before_disagreements": sum(r["counts_miner"][0] != r["counts_cpu"][0] for r in reports),
            "count_after_disagreements": sum(r["counts_miner"][1] != r["counts_cpu"][1] for r in reports),
            "max_abs_diff_w_prime": max((r["max_abs_diff"] for r in reports), default=0.0),
            "max_ulp_diff_w_prime": max((r["max_ulp_diff"] for r in reports), default=0.0),
            "hash_causes": dict(Counter(r["hash_cause"] for r in reports if r["hash_cause"])),
            "cpu_self_check_equal": sum(r["canonical_equal"] for r in reports),
            "correct_before_range": [min(correct, default=0), max(correct, default=0)],
        },
        "all_attempts": {
            "attempts": sum(attempts), "weights_hash_equal": sum(r["hash_equal"] for r in reports),
            "r_met_miner_only": sum(r["met_miner_only"] for r in reports),
            "r_met_cpu_only": sum(r["met_cpu_only"] for r in reports),
            "required_sign_flips": len(flips), "flip_causes": dict(sum((r["causes"] for r in reports), Counter())),
        },
        "attempts_per_proof": {"mean": float(np.mean(attempts)) if attempts else 0.0,
                               "median": float(np.median(attempts)) if attempts else 0.0, "max": max(attempts, default=0)},
        "flips": flips[: cfg.max_details],
        "count_disagreements": count_diff[: cfg.max_details],
    }


def describe_environment(device: torch.device) -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.processor())
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "miner_device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
            "cpu_model": cpu, "cpu_count": os.cpu_count()}


def run(cfg: Config) -> dict[str, Any]:
    t0 = time.perf_counter()
    verifier_setup = setup_cpu_verifier(cfg.allow_torch_version)  # first: the pin precedes every tensor operation
    device = torch.device(cfg.miner_device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--miner-device cuda: no CUDA device is visible to torch; use --miner-device cpu")
    task = load_task(TASK)
    miner_settings = setup_miner(cfg.miner_mode)
    futures: list[Future] = []
    ctx = multiprocessing.get_context("spawn")  # CUDA is live in this process: never fork it
    with ProcessPoolExecutor(cfg.workers, mp_context=ctx, initializer=init_worker, initargs=(cfg.allow_torch_version,)) as pool:
        worker = pool.submit(worker_setup).result()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            stats = mine(cfg, task, lambda job: futures.append(pool.submit(verify_job, job)), t0)
        t_mined = time.perf_counter()
        reports = sorted((f.result() for f in futures), key=lambda r: r["proof"])
    elapsed = time.perf_counter() - t0
    stdlib = set(sys.stdlib_module_names)
    return {
        "config": asdict(cfg), "task": TASK, "environment": describe_environment(device),
        "genesis_hash": "0x" + task.genesis_hash.hex(), "spec_hash": "0x" + task.spec_hash.hex(),
        "verifier_main": verifier_setup, "verifier_worker": worker, "miner_settings": miner_settings,
        "miner_warnings": sorted({str(w.message)[:300] for w in caught})[:10],
        "third_party_modules": sorted({m.split(".")[0] for m in sys.modules} - stdlib - {"__main__", "__mp_main__"}),
        "miner": stats, "seconds": {"mining": round(t_mined - t0, 2), "total": round(elapsed, 2)},
        **summarise(cfg, reports),
    }


def print_table(s: dict[str, Any]) -> None:
    acc, att, env, cfg = s["accepted"], s["all_attempts"], s["environment"], s["config"]
    pin = s["verifier_worker"].get("dispatch", "unpinned")
    print(f"\nminer {cfg['miner_device']} ({env['miner_device_name']}, {cfg['miner_mode']}) vs CPU verifier "
          f"({cfg['workers']} workers, {pin}); torch {env['torch']}, k={cfg['k']}")
    print(f"proofs {acc['proofs']}/{cfg['proofs']} in {s['seconds']['total']} s"
          f"{' (time cap)' if s['miner']['stopped_by_time_cap'] else ''}, not found {s['miner']['not_found']}, "
          f"attempts/proof mean {s['attempts_per_proof']['mean']:.1f} max {s['attempts_per_proof']['max']}")
    print(f"{'':34}{'accepted proofs':>18}{'all attempts':>16}")
    print(f"{'W prime hash equal':34}{acc['weights_hash_equal']:>12}/{acc['proofs']:<5}{att['weights_hash_equal']:>10}/{att['attempts']}")
    print(f"{'R verdict: miner yes, CPU no':34}{acc['r_verdict_disagreements']:>18}{att['r_met_miner_only']:>16}")
    print(f"{'R verdict: miner no, CPU yes':34}{'-':>18}{att['r_met_cpu_only']:>16}")
    print(f"{'required-weight sign flips':34}{'':>18}{att['required_sign_flips']:>16}")
    print(f"count disagreements before/after   {acc['count_before_disagreements']}/{acc['count_after_disagreements']}; "
          f"correct before ranged {acc['correct_before_range']}")
    print(f"max |W'_miner - W'_cpu| = {acc['max_abs_diff_w_prime']:.3g} ({acc['max_ulp_diff_w_prime']:.3g} ulp); "
          f"hash causes {acc['hash_causes'] or '-'}; flip causes {att['flip_causes'] or '-'}")
    print(f"CPU self-check (this process vs worker W' hash): {acc['cpu_self_check_equal']}/{acc['proofs']} equal")


def main(argv: list[str] | None = None) -> None:
    d = Config()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--proofs", type=int, default=d.proofs)
    p.add_argument("--k", type=int, default=d.k, help="difficulty: requirements per proof")
    p.add_argument("--miner-device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--miner-mode", choices=("strict", "prover-defaults"), default=d.miner_mode)
    p.add_argument("--workers", type=int, default=d.workers, help="CPU verifier processes")
    p.add_argument("--seed", default=d.seed)
    p.add_argument("--train-between", type=int, default=d.train_between)
    p.add_argument("--max-attempts", type=int, default=d.max_attempts)
    p.add_argument("--time-cap", type=float, default=d.time_cap_s, help="seconds; stop starting proofs after it")
    p.add_argument("--allow-torch-version", action="store_true",
                   help="pin CPU dispatch under a torch release other than pol_core.portable's (skips only that check)")
    p.add_argument("--out", default=os.path.join(os.environ["OUT"], "gpu_agreement.json") if os.environ.get("OUT") else None)
    a = p.parse_args(argv)
    cfg = Config(a.proofs, a.k, a.miner_device, a.miner_mode, max(1, a.workers), a.seed, a.train_between,
                 a.max_attempts, a.time_cap, a.allow_torch_version)
    summary = run(cfg)
    print_table(summary)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(summary, f, indent=1, default=lambda o: "0x" + o.hex() if isinstance(o, bytes) else str(o))
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
