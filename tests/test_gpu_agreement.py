"""bench/gpu_agreement.py: the CPU-only self-check, and that its comparator reports what it should."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench import gpu_agreement as ga
from pol_core.keccak import keccak256
from pol_core.requirements import compute_requirements, requirement_index
from pol_core.types import Difficulty, Hash32

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_miner_and_cpu_verifier_agree_bit_for_bit(tmp_path):
    """Miner and verifier in different processes on the same CPU: every W' hash, R verdict, sign and
    count must agree. Fails if consensus arithmetic stops being deterministic across processes."""
    out = tmp_path / "smoke.json"
    subprocess.run([sys.executable, "bench/gpu_agreement.py", "--proofs", "4", "--k", "2", "--miner-device", "cpu",
                    "--workers", "1", "--out", str(out)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    s = json.loads(out.read_text())
    acc, att = s["accepted"], s["all_attempts"]
    assert acc["proofs"] == 4 and s["miner"]["not_found"] == 0
    assert acc["weights_hash_equal"] == acc["cpu_self_check_equal"] == 4
    assert att["attempts"] >= 4 and att["weights_hash_equal"] == att["attempts"]
    assert acc["r_verdict_disagreements"] == att["r_met_miner_only"] == att["r_met_cpu_only"] == 0
    assert att["required_sign_flips"] == 0 and s["flips"] == []
    assert acc["count_before_disagreements"] == acc["count_after_disagreements"] == 0
    assert acc["max_abs_diff_w_prime"] == 0.0 and acc["hash_causes"] == {}
    assert s["environment"]["torch"] == torch.__version__ and s["genesis_hash"].startswith("0x")


def test_comparator_reports_a_miner_that_disagrees(digits):
    """A doctored miner result (one gradient sign flipped, W' one ulp off, wrong counts) is reported as
    exactly those disagreements, with their causes: the self-check above cannot pass vacuously."""
    verifier = ga.Verifier(digits)
    reqs = tuple(compute_requirements(Hash32(keccak256(b"doctored")), Difficulty(2), digits.num_params))
    model = digits.new_model()
    honest, grad, new_state = ga.compute_step_outcome(digits, model, ga.GradTap(model), (1, 2, 3, 4), reqs, torch.device("cpu"))
    flipped = replace(honest, met=not honest.met, oriented=(-honest.oriented[0],) + honest.oriented[1:],
                      grads=(-honest.grads[0],) + honest.grads[1:], new_hash=bytes(32))
    miner_state = {k: v.clone() for k, v in new_state.items()}
    w = miner_state["0.weight"].view(-1)
    w[0] = float(np.nextafter(np.float32(w[0]), np.float32(np.inf)))
    miner_grad = grad.clone()
    miner_grad[requirement_index(reqs[0])] *= -1
    job = ga.Job(0, reqs, ga.to_numpy(digits.genesis_state), (((1, 2, 3, 4), flipped),), ga.to_numpy(miner_state),
                 miner_grad.numpy(), (-1, -1), honest.new_hash)

    r = verifier.verify(job)
    assert r["sign_flips"] == 1 and r["flips"][0]["cause"] == "sign of a near-zero gradient"
    assert r["flips"][0]["coordinate"] == requirement_index(reqs[0])
    assert (r["met_miner_only"], r["met_cpu_only"]) == ((1, 0) if flipped.met else (0, 1))
    assert r["hash_equal"] == 0 and not r["accepted_hash_equal"] and r["canonical_equal"]
    assert r["hash_cause"].startswith("gradient arithmetic") and r["max_ulp_diff"] == 1.0
    assert r["counts_cpu"] != (-1, -1) and r["fragile_cpu"]["before"] is not None

    s = ga.summarise(ga.Config(), [r])
    assert s["accepted"]["weights_hash_equal"] == 0 and s["accepted"]["count_after_disagreements"] == 1
    assert s["all_attempts"]["required_sign_flips"] == 1 and len(s["count_disagreements"]) == 1


def test_flip_causes():
    assert ga.classify_flip(0.0, 1e-9, 0.0, -1e-12) == "zero gradient on one side"
    assert ga.classify_flip(1e-9, -1e-9, -1e-11, 1e-11) == "sign of a near-zero gradient"
    assert ga.classify_flip(1e-7, 1e-7, -1e-9, 0.0).startswith("update below half an ulp")


def test_import_pulls_no_wire_chain_or_pydantic_code():
    """The GPU machine has neither web3 nor pydantic, and the bench must not need the wire layer."""
    code = ("import sys; base = set(sys.modules); import bench.gpu_agreement; "
            "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - base})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True,
                                timeout=120).stdout.split())
    assert {"pol_core", "torch"} <= loaded
    assert not loaded & {"pol", "grpc", "google", "web3", "eth_account", "eth_abi", "eth_utils", "pydantic", "sklearn"}
