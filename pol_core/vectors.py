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

from .header import Header, compute_header_encoding, compute_header_hash
from .keccak import keccak256
from .requirements import compute_requirements
from .types import Address, CorrectCount, Difficulty, Hash32, Height, SampleIndex
from .weights import compute_weights_hash

REQUIREMENT_CASES = [(1, 2), (4, 3866), (8, 3866), (16, 11_173_962), (32, 100), (50, 100), (64, 11_173_962)]


def seed_for(i: int) -> Hash32:
    return keccak256(b"pol-vector-seed" + i.to_bytes(4, "big"))


def build_requirement_vectors() -> list[dict[str, Any]]:
    out = []
    for i, (k, n) in enumerate(REQUIREMENT_CASES):
        seed = seed_for(i)
        out.append({"seed": "0x" + seed.hex(), "k": k, "numParams": n, "requirements": compute_requirements(seed, Difficulty(k), n)})
    return out


def build_header(i: int) -> Header:
    return Header(
        parent=seed_for(100 + i),
        height=Height([1, 2, 77, 2**40][i % 4]),
        task_spec_hash=seed_for(200 + i),
        weights_hash=seed_for(300 + i),
        new_weights_hash=seed_for(400 + i),
        indices=tuple(SampleIndex(v) for v in [[0, 1, 2, 3], [1436, 7, 99, 1000], [4294967295, 5, 6, 8], [3]][i % 4]),
        correct_before=CorrectCount([0, 350, 9999, 12][i % 4]),
        correct_after=CorrectCount([1, 351, 10000, 4294967295][i % 4]),
        difficulty=Difficulty([1, 4, 16, 255][i % 4]),
        miner=Address(seed_for(500 + i)[:20]),
    )


def build_header_vectors() -> list[dict[str, Any]]:
    out = []
    for i in range(4):
        h = build_header(i)
        case = h.to_json()
        case["encoding"] = "0x" + compute_header_encoding(h).hex()
        case["hash"] = "0x" + compute_header_hash(h).hex()
        out.append(case)
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
        "headers.json": {"count": 4, "cases": build_header_vectors()},
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
