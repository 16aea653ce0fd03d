"""Weight crafting at a real difficulty: what a miner who edits W gets accepted in a fixed wall time.

    .venv/bin/python bench/craft.py [--minutes 10] [--k 24] [--out craft.json]

On digits-cnn, from one parent W' (genesis trained honestly for --parent-steps steps), the attacker loops
until the time is up. Each attempt sees a fresh parent block (another height, another prevrandao), hence
a fresh R under each rule set, as an attacker would after every block on a live chain. For each R it runs
the attack library's crafting routine (tests/attacks/crafting.craft_for: warm W by a few training steps,
then descend on W itself until one step on some P meets R and the counts pass):

- paper rules: W* is sent as the proof's W, and `compute_verdict` judges it;
- chain-bound rules: W* cannot be sent. The attacker's best expression of it is the part that is real
  training (the warm steps, as a segment) and the P it tuned for W*; `compute_chain_bound_verdict` replays
  the parent's canonical W' through that segment and applies P there.

A chain-bound acceptance is then checked: is the verifier's W the canonical replay (honest work, which the
attacker could have mined without crafting), and is W* attested anywhere (it must never be)?
One torch thread, dispatch pinned as the verifier pins it. Prints a markdown summary; --out writes JSON.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pol_core.keccak import keccak256  # noqa: E402
from pol_core.step import enable_deterministic_mode  # noqa: E402
from pol_core.tasks import load_task  # noqa: E402
from pol_core.types import ConsensusError, SampleIndex  # noqa: E402
from pol_core.weights import compute_weights_hash  # noqa: E402
from tests.attacks import make_scenario, sorted_batch, train, trained_parent  # noqa: E402
from tests.attacks.crafting import craft_for  # noqa: E402


@dataclass(frozen=True)
class Config:
    minutes: float = 10.0
    k: int = 24
    parent_steps: int = 30  # honest steps from genesis to the parent W'
    warm_steps: int = 10  # the attacker's own training before the edit (as in craft_weights)
    warm_batch: int = 64  # a valid segment step size for digits-cnn (4^j * S)
    seed: int = 0


@dataclass
class Attempt:
    paper_crafted: bool
    paper_seconds: float  # crafting time for the paper R
    paper_verdict: str  # "accepted" or the refusal reason
    cb_crafted: bool
    cb_seconds: float  # crafting time for the chain-bound R
    cb_verdict: str
    cb_honest: bool | None = None  # when accepted: the verifier's W is the canonical replay
    cb_crafted_attested: bool | None = None  # when accepted: the attested W is the attacker's W*


def pin_dispatch() -> str:
    """The verifier's process set-up: deterministic kernels, one thread, and where the branch has it,
    the pinned CPU dispatch (pol_core.portable)."""
    enable_deterministic_mode()
    try:
        from pol_core.portable import pin_cpu_dispatch
    except ImportError:
        torch.set_num_threads(1)
        return "enable_deterministic_mode (pol_core.portable is not on this branch)"
    report = pin_cpu_dispatch()
    return f"pin_cpu_dispatch: {report}"


def attempt(cfg: Config, paper, cb, parent, n: int, gen: torch.Generator) -> Attempt:
    """One parent block as the chain would present it (height and prevrandao new), one craft per rule set."""
    sc = make_scenario(paper, cb, parent, cfg.k, randao=keccak256(b"craft-randao" + n.to_bytes(8, "big")),
                       height=7 + n)
    tol = paper.config.sabotage_tolerance
    warm = tuple(tuple(SampleIndex(i) for i in sorted_batch(gen, cb.train_size, cfg.warm_batch))
                 for _ in range(cfg.warm_steps))
    start = train(cb, sc.parent_state, warm)  # real training: expressible as a segment

    t0 = time.perf_counter()
    try:
        w_paper, p_paper, _ = craft_for(paper, start, sc.paper_requirements(), gen,
                                        lambda b, a: a > b and b + tol >= sc.parent_correct)
        paper_crafted = True
    except RuntimeError:
        paper_crafted = False
    paper_seconds = time.perf_counter() - t0
    paper_verdict = "not crafted"
    if paper_crafted:
        try:
            sc.paper_verdict(sc.paper_proof(w_paper, p_paper))
            paper_verdict = "accepted"
        except ConsensusError as e:
            paper_verdict = e.reason.name

    t0 = time.perf_counter()
    try:
        w_cb, p_cb, _ = craft_for(cb, start, sc.cb_requirements(), gen,
                                  lambda b, a: a > b and a >= sc.parent_correct)
        cb_crafted = True
    except RuntimeError:
        cb_crafted = False
    cb_seconds = time.perf_counter() - t0
    out = Attempt(paper_crafted, paper_seconds, paper_verdict, cb_crafted, cb_seconds, "not crafted")
    if not cb_crafted:
        return out
    try:
        v = sc.cb_verdict(sc.cb_proof(warm, p_cb))
    except ConsensusError as e:
        out.cb_verdict = e.reason.name
        return out
    out.cb_verdict = "accepted"
    out.cb_honest = v.state is not None and compute_weights_hash(v.state) == compute_weights_hash(start)
    out.cb_crafted_attested = v.header.weights_hash == compute_weights_hash(w_cb)
    return out


def summarize(cfg: Config, attempts: list[Attempt], wall: float, dispatch: str) -> dict:
    paper_ok = [a for a in attempts if a.paper_verdict == "accepted"]
    cb_ok = [a for a in attempts if a.cb_verdict == "accepted"]
    paper_time = sum(a.paper_seconds for a in attempts)
    return {
        "config": asdict(cfg),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "platform": platform.platform(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(), "dispatch": dispatch},
        "wall_seconds": wall,
        "attempts": len(attempts),
        "paper": {
            "crafted": sum(a.paper_crafted for a in attempts),
            "accepted": len(paper_ok),
            "craft_seconds_total": paper_time,
            "seconds_per_accepted": paper_time / len(paper_ok) if paper_ok else None,
            "craft_seconds_median": statistics.median(a.paper_seconds for a in attempts) if attempts else None,
            "verdicts": dict(collections.Counter(a.paper_verdict for a in attempts)),
        },
        "chain_bound": {
            "crafted": sum(a.cb_crafted for a in attempts),
            "accepted": len(cb_ok),
            "accepted_as_honest_work": sum(bool(a.cb_honest) for a in cb_ok),
            "accepted_with_crafted_w": sum(bool(a.cb_crafted_attested) for a in cb_ok),
            "craft_seconds_total": sum(a.cb_seconds for a in attempts),
            "verdicts": dict(collections.Counter(a.cb_verdict for a in attempts)),
        },
        "per_attempt": [asdict(a) for a in attempts],
    }


def print_markdown(s: dict) -> None:
    p, c, m = s["paper"], s["chain_bound"], s["machine"]
    load = ", ".join(f"{x:.2f}" for x in m["load_average"])
    print(f"digits-cnn, k = {s['config']['k']}, {s['wall_seconds'] / 60:.1f} min wall, {s['attempts']} attempts "
          f"(one per fresh R under each rule set), {m['threads']} thread, {m['cpus']} CPUs, load average {load}")
    print(f"dispatch: {m['dispatch']}")
    print()
    print("| rules | crafts that met R | blocks accepted | craft time per accepted block | verdicts |")
    print("|---|---:|---:|---:|---|")
    per = f"{p['seconds_per_accepted']:.1f} s" if p["seconds_per_accepted"] is not None else "-"
    hist = lambda d: ", ".join(f"{k} {v}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))  # noqa: E731
    print(f"| paper (W = W*) | {p['crafted']} / {s['attempts']} | {p['accepted']} | {per} | {hist(p['verdicts'])} |")
    print(f"| chain-bound (warm segment + P) | {c['crafted']} / {s['attempts']} | {c['accepted']} | - | "
          f"{hist(c['verdicts'])} |")
    if c["accepted"]:
        print(f"\nchain-bound acceptances: {c['accepted_as_honest_work']} are the canonical replay (honest work), "
              f"{c['accepted_with_crafted_w']} attest the crafted W*")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=Config.minutes, help="wall time for new attempts")
    ap.add_argument("--k", type=int, default=Config.k, help="difficulty: required weights per R")
    ap.add_argument("--parent-steps", type=int, default=Config.parent_steps)
    ap.add_argument("--seed", type=int, default=Config.seed)
    ap.add_argument("--out", type=Path, help="write the JSON summary here")
    args = ap.parse_args(argv)
    cfg = Config(minutes=args.minutes, k=args.k, parent_steps=args.parent_steps, seed=args.seed)

    dispatch = pin_dispatch()
    paper = load_task("digits-cnn", rules="paper")
    cb = paper.with_rules("chain-bound")
    gen = torch.Generator().manual_seed(cfg.seed)
    parent = trained_parent(cb, gen, steps=cfg.parent_steps)

    attempts: list[Attempt] = []
    t0 = time.perf_counter()
    deadline = t0 + 60 * cfg.minutes
    while time.perf_counter() < deadline:  # an attempt started before the deadline runs to its end
        a = attempt(cfg, paper, cb, parent, len(attempts), gen)
        attempts.append(a)
        print(f"attempt {len(attempts)}: paper {a.paper_verdict} ({a.paper_seconds:.1f} s), "
              f"chain-bound {a.cb_verdict} ({a.cb_seconds:.1f} s)", file=sys.stderr, flush=True)
    summary = summarize(cfg, attempts, time.perf_counter() - t0, dispatch)
    print_markdown(summary)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
