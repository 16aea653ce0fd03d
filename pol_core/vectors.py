"""Golden vectors: written by the core, checked by pytest and by the contract's forge tests.

    python -m pol_core.vectors --write tests/vectors    # regenerate
    python -m pol_core.vectors --check tests/vectors    # exit 1 if the committed files differ
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .difficulty import DifficultyParams, compute_next_difficulty
from .header import Header, compute_header_encoding, compute_header_hash
from .keccak import keccak256
from .link import compute_link, compute_seed
from .requirements import compute_requirements
from .rulesets import RuleSet
from .segment import compute_segment_encoding, compute_segment_root
from .types import Address, CorrectCount, Difficulty, Hash32, Height, RedrawIndex, SampleIndex, Timestamp
from .weights import compute_weights_hash

DIGITS_NUM_PARAMS = 3842  # |W| of digits-cnn/v2
RESNET18_NUM_PARAMS = 11_173_962
REQUIREMENT_CASES = [(1, 2), (4, DIGITS_NUM_PARAMS), (8, DIGITS_NUM_PARAMS), (16, RESNET18_NUM_PARAMS), (32, 100),
                     (50, 100), (64, RESNET18_NUM_PARAMS)]


def seed_for(i: int) -> Hash32:
    return keccak256(b"pol-vector-seed" + i.to_bytes(4, "big"))


def build_requirement_vectors() -> list[dict[str, Any]]:
    out = []
    for i, (k, n) in enumerate(REQUIREMENT_CASES):
        seed = seed_for(i)
        out.append({"seed": "0x" + seed.hex(), "k": k, "numParams": n, "requirements": compute_requirements(seed, Difficulty(k), n)})
    return out


HEADER_CASES = 6


def build_header(i: int) -> Header:
    """Paper-style headers (zero segment root, j = 0) at even i, chain-bound ones at odd i."""
    chain_bound = i % 2 == 1
    return Header(
        parent=seed_for(100 + i),
        height=Height([1, 2, 77, 2**40, 5, 2**64 - 1][i % 6]),
        task_spec_hash=seed_for(200 + i),
        weights_hash=seed_for(300 + i),
        new_weights_hash=seed_for(400 + i),
        indices=tuple(SampleIndex(v) for v in
                      [[0, 1, 2, 3], [7, 99, 1000, 1436], [4294967295, 5, 6, 8], [3], [], [0, 1, 2, 4294967295]][i % 6]),
        correct_before=CorrectCount([0, 350, 9999, 12, 7, 0][i % 6]),
        correct_after=CorrectCount([1, 351, 10000, 4294967295, 8, 4294967295][i % 6]),
        difficulty=Difficulty([1, 4, 16, 255, 0, 255][i % 6]),
        miner=Address(seed_for(500 + i)[:20]),
        segment_root=seed_for(600 + i) if chain_bound else Hash32(bytes(32)),
        redraw=RedrawIndex([0, 0, 0, 3, 0, 4294967295][i % 6]),
    )


def build_header_vectors() -> list[dict[str, Any]]:
    out = []
    for i in range(HEADER_CASES):
        h = build_header(i)
        case = h.to_json()
        case["encoding"] = "0x" + compute_header_encoding(h).hex()
        case["hash"] = "0x" + compute_header_hash(h).hex()
        out.append(case)
    return out


SEGMENT_CASES: list[list[list[int]]] = [
    [],  # the empty segment: root keccak256(b""), never zero
    [[0, 1, 2, 3]],
    [[3, 77, 1000, 1436], list(range(0, 32, 2))],
    [[0, 1, 2, 3], list(range(16)), list(range(100, 164)), [4294967292, 4294967293, 4294967294, 4294967295]],
]


def build_segment_vectors() -> list[dict[str, Any]]:
    return [{"steps": seg, "encoding": "0x" + compute_segment_encoding(seg).hex(),
             "root": "0x" + compute_segment_root(seg).hex()} for seg in SEGMENT_CASES]


def build_link_vectors() -> list[dict[str, Any]]:
    """link = keccak256(blockHash || randao) (chain-bound) or blockHash (paper); seed(link, j)."""
    out = []
    for i, randao in enumerate([bytes(32), seed_for(700), (2**256 - 1).to_bytes(32, "big"), seed_for(701)]):
        block_hash = seed_for(800 + i)
        link = compute_link(RuleSet.CHAIN_BOUND, block_hash, Hash32(randao))
        assert compute_link(RuleSet.PAPER, block_hash, Hash32(randao)) == block_hash
        js = [0, 1, 2, 4294967295]
        out.append({"blockHash": "0x" + block_hash.hex(), "randao": "0x" + randao.hex(), "link": "0x" + link.hex(),
                    "redraws": js, "seeds": ["0x" + compute_seed(link, RedrawIndex(j)).hex() for j in js]})
    return out


# (k0, kMin, kMax, T, tau, t0, tipHeight, tipTime): edges of the rounding, the clamps and large drifts.
DIFFICULTY_CASES = [
    (8, 1, 32, 10, 40, 1_000_000, 0, 1_000_000),  # genesis: on schedule
    (8, 1, 32, 10, 40, 1_000_000, 1, 1_000_010),  # one block, on schedule
    (8, 1, 32, 10, 40, 1_000_000, 4, 1_000_020),  # 20 s ahead = tau/2: rounds up to +1
    (8, 1, 32, 10, 40, 1_000_000, 4, 1_000_021),  # 19 s ahead: stays
    (8, 1, 32, 10, 40, 1_000_000, 4, 1_000_060),  # 20 s behind = -tau/2: rounds up to 0
    (8, 1, 32, 10, 40, 1_000_000, 4, 1_000_061),  # 21 s behind: -1
    (8, 1, 64, 10, 40, 1_000_000, 100, 1_000_000),  # 1000 s ahead: +25
    (8, 1, 32, 10, 40, 1_000_000, 1000, 1_000_000),  # far ahead: clamped to kMax
    (8, 1, 32, 10, 40, 1_000_000, 3, 1_500_000),  # far behind: clamped to kMin
    (4, 2, 16, 5, 7, 1_700_000_000, 12, 1_700_000_033),  # odd tau
    (4, 2, 16, 5, 7, 1_700_000_000, 12, 1_700_000_091),
    (255, 1, 255, 1, 1, 0, 2**32 - 1, 2**32 - 1),  # extremes of the uint32 fields
    (1, 1, 255, 2**32 - 1, 2**32 - 1, 0, 2**32 - 1, 0),
]


def build_difficulty_vectors() -> list[dict[str, Any]]:
    out = []
    for k0, lo, hi, t, tau, t0, h, tt in DIFFICULTY_CASES:
        p = DifficultyParams(k0, lo, hi, t, tau, Timestamp(t0))
        out.append({"initial": k0, "minimum": lo, "maximum": hi, "targetBlockTime": t, "halfLife": tau,
                    "genesisTime": t0, "tipHeight": h, "tipTime": tt,
                    "difficulty": compute_next_difficulty(p, Height(h), Timestamp(tt))})
    return out


def build_weights_vectors() -> list[dict[str, Any]]:
    """Tiny models with fixed values, so the hash depends only on the serialization rule."""
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -1.25, 3.0], [0.0, -0.0, 1e-8]]))
        lin.bias.copy_(torch.tensor([1.0, -2.0]))
    bn = nn.BatchNorm1d(2)
    with torch.no_grad():
        bn.get_buffer("running_mean").copy_(torch.tensor([0.25, -0.75]))
        bn.get_buffer("num_batches_tracked").fill_(3)
    out = []
    for name, model in (("linear-3-2", lin), ("batchnorm-2", bn), ("sequential", nn.Sequential(lin, bn))):
        state = model.state_dict()
        out.append({
            "name": name,
            "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape), "values": v.reshape(-1).tolist()} for k, v in state.items()},
            "weightsHash": "0x" + compute_weights_hash(state).hex(),
        })
    return out


def build_all() -> dict[str, Any]:
    return {
        "requirements.json": {"count": len(REQUIREMENT_CASES), "cases": build_requirement_vectors()},
        "headers.json": {"count": HEADER_CASES, "cases": build_header_vectors()},
        "segments.json": {"count": len(SEGMENT_CASES), "cases": build_segment_vectors()},
        "links.json": {"count": 4, "cases": build_link_vectors()},
        "difficulty.json": {"count": len(DIFFICULTY_CASES), "cases": build_difficulty_vectors()},
        "weights.json": {"count": 3, "cases": build_weights_vectors()},
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="DIR")
    mode.add_argument("--check", metavar="DIR")
    args = ap.parse_args(argv)
    files = build_all()
    if args.write:
        Path(args.write).mkdir(parents=True, exist_ok=True)
        for name, doc in files.items():
            (Path(args.write) / name).write_text(render(doc))
        return 0
    stale = [n for n, doc in files.items() if (Path(args.check) / n).read_text() != render(doc)]
    for n in stale:
        print(f"golden vector {n} differs from what the core computes", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
