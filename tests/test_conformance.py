"""Conformance vectors (tests/vectors/conformance), the published task constants, and the parts of
docs/PROTOCOL.md a clean-room implementation depends on: the spec document, decimal floats, the
fused update, and the non-finite rule."""
import json
import re
from dataclasses import fields
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from pol_core import conformance
from pol_core.genesis_init import compute_genesis_state
from pol_core.step import process_step
from pol_core.tasks import load_task
from pol_core.tasks.cifar import CONFIG as CIFAR, build_resnet18_cifar
from pol_core.tasks.published import PUBLISHED
from pol_core.tasks.spec import TaskConfig, compute_decimal, compute_spec_document
from pol_core.types import DatasetError, InvalidTaskConfig
from pol_core.weights import compute_weights_hash, count_learnable, get_flat_params

ROOT = Path(__file__).parent.parent
VECTORS = ROOT / "tests" / "vectors" / "conformance"
PROTOCOL = (ROOT / "docs" / "PROTOCOL.md").read_text()


@pytest.mark.parametrize("name", sorted(conformance.FILES))
def test_conformance_vectors_hold(name):
    assert conformance.check_file(VECTORS / name) == []


def test_conformance_vectors_cover_every_block_reason_of_both_rule_sets():
    reasons = {}
    for name in conformance.FILES:
        doc = json.loads((VECTORS / name).read_text())
        reasons[doc["rules"]] = {c["expected"].get("reason", "VALID") for c in doc["cases"]}
    common = {"VALID", "REQUIREMENTS_NOT_MET", "ACCURACY_NOT_IMPROVED", "STALE", "WRONG_HEIGHT", "INVALID_INDICES",
              "INVALID_HEADER", "NON_FINITE"}
    assert common | {"SABOTAGE_GUARD", "WEIGHTS_HASH_MISMATCH", "INVALID_WEIGHTS"} <= reasons["paper"]
    assert common | {"TIP_REGRESSED", "REDRAW_TOO_EARLY", "INVALID_SEGMENT", "PARENT_STATE_MISMATCH"} <= reasons["chain-bound"]
    size = sum((VECTORS / n).stat().st_size for n in conformance.FILES)
    assert size < 1_000_000  # small enough to read, diff and ship


def test_a_changed_expectation_is_caught(tmp_path):
    """The checker is not a rubber stamp: one altered count and one altered reason are reported."""
    for name in conformance.FILES:
        doc = json.loads((VECTORS / name).read_text())
        valid = next(c for c in doc["cases"] if c["expected"]["valid"])
        valid["expected"]["correctAfter"] += 1
        invalid = next(c for c in doc["cases"] if not c["expected"]["valid"])
        invalid["expected"]["reason"] = "STALE" if invalid["expected"]["reason"] != "STALE" else "WRONG_HEIGHT"
        (tmp_path / name).write_text(json.dumps(doc))
        problems = conformance.check_file(tmp_path / name)
        assert len(problems) == 2 and valid["name"] in problems[0] and invalid["name"] in problems[1]


def test_without_the_non_finite_rule_overflowed_blocks_get_a_verdict(monkeypatch):
    """Remove the rule and the overflowed cases no longer refuse as NON_FINITE: W' full of NaN or counts
    taken by argmax over infinities reach the ordinary rules, whose outcome is then whatever NaN
    comparisons and this library's argmax happen to give."""
    from pol_core import chainbound, step, verify

    monkeypatch.setattr(step, "process_logits_check", lambda logits: None)
    monkeypatch.setattr(verify, "process_finite_check", lambda state, what: None)
    monkeypatch.setattr(chainbound, "process_finite_check", lambda state, what: None)
    doc = json.loads((VECTORS / "digits-cnn_paper.json").read_text())
    task = load_task("digits-cnn", rules="paper")
    for case in doc["cases"]:
        if case["name"] in ("new_weights_not_finite", "logits_not_finite"):
            assert case["expected"] == {"valid": False, "reason": "NON_FINITE"}
            assert conformance.run_case(task, doc["states"], case) != case["expected"], case["name"]


def test_published_constants_are_the_tasks():
    for rules in ("chain-bound", "paper"):
        task = load_task("digits-cnn", rules=rules)
        p = PUBLISHED["digits-cnn"]
        assert (task.spec_hash, task.fingerprint, task.genesis_hash, task.num_params) == \
            (p.spec_hashes[rules], p.dataset_fingerprint, p.genesis_weights_hash, p.num_params)
    resnet = build_resnet18_cifar()
    state = compute_genesis_state(CIFAR.arch, CIFAR.init_seed, resnet)
    assert compute_weights_hash(state) == PUBLISHED["cifar10-resnet18"].genesis_weights_hash
    assert count_learnable(resnet) == PUBLISHED["cifar10-resnet18"].num_params
    # PROTOCOL.md publishes the same values.
    for p in PUBLISHED.values():
        assert "0x" + p.genesis_weights_hash.hex() in PROTOCOL and f"{p.num_params:,}" in PROTOCOL
        for h in [*p.spec_hashes.values(), p.dataset_fingerprint]:
            assert h is None or "0x" + h.hex() in PROTOCOL


def test_digits_refuse_other_data(monkeypatch):
    from pol_core.tasks import digits

    real = digits.load_digits_data

    def tampered():
        data = real()
        data.train_x[0, 0, 0, 0] += 1
        return data

    monkeypatch.setattr(digits, "load_digits_data", tampered)
    with pytest.raises(DatasetError, match="published"):
        digits.load_digits_task()


def test_spec_document_is_the_one_protocol_md_prints():
    """PROTOCOL.md §1 prints digits-cnn's canonical JSON; the code hashes exactly those bytes, and the
    document lists every TaskConfig field."""
    task = load_task("digits-cnn")
    printed = re.search(r"```json\n(\{\"config\".*?)\n```", PROTOCOL, re.S)
    assert printed is not None
    doc = compute_spec_document(task.config, task.fingerprint, task.genesis_hash, task.num_params)
    assert doc.decode() == printed.group(1)
    assert set(json.loads(doc)["config"]) == {f.name for f in fields(TaskConfig)}
    for f in fields(TaskConfig):
        assert f"`{f.name}`" in PROTOCOL


@pytest.mark.parametrize("x, text", [(0.01, "0.01"), (1e-06, "0.000001"), (16.0, "16.0"), (255.0, "255.0"),
                                     (0.247, "0.247"), (1e16, "10000000000000000.0"), (-0.5, "-0.5"),
                                     (0.1 + 0.2, "0.30000000000000004")])
def test_decimal_strings(x, text):
    assert compute_decimal(x) == text and float(text) == x


def test_non_finite_task_parameters_have_no_decimal():
    for x in (float("nan"), float("inf")):
        with pytest.raises(InvalidTaskConfig):
            compute_decimal(x)


def round_binary32(q: Fraction) -> float:
    """q rounded once to the nearest binary32, ties to even (normal range)."""
    if q == 0:
        return 0.0
    sign, a = (-1 if q < 0 else 1), abs(q)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    scaled = a / Fraction(2) ** (e - 23)
    n, rest = divmod(scaled.numerator, scaled.denominator)
    if 2 * rest > scaled.denominator or (2 * rest == scaled.denominator and n % 2 == 1):
        n += 1
    return sign * float(Fraction(n) * Fraction(2) ** (e - 23))


def test_update_is_one_fused_multiply_add_per_weight(digits):
    """PROTOCOL.md §6: w' = fma(binary32(-lr_B), g, w), rounded once; rounding lr*g first differs."""
    model = digits.new_model()
    w = get_flat_params(model).clone()
    model.train()
    x, y = digits.batch(range(16))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    stepped = digits.new_model()
    process_step(stepped, x, y, digits.config)  # a batch of 16 = 4^1 * S: lr_B = 2 lr
    ours = get_flat_params(stepped)
    lr = np.float32(-digits.config.lr * 2)
    fused = [round_binary32(Fraction(float(a)) + Fraction(float(lr)) * Fraction(float(b))) for a, b in zip(w, g)]
    unfused = (w.numpy() + (lr * g.numpy()).astype(np.float32)).astype(np.float32)
    assert ours.tolist() == fused
    assert int((ours.numpy() != unfused).sum()) > 0  # the two readings do differ on real gradients
