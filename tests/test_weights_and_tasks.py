import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from pol_core.step import compute_batch_exponent, compute_correct, compute_step_lr, process_step
from pol_core.tasks.cifar import load_cifar_task, write_cifar_like
from pol_core.tasks.spec import compute_spec_hash
from pol_core.types import (
    DatasetError,
    InvalidBatchSize,
    InvalidTaskConfig,
    InvalidWeights,
    UnknownTask,
    WeightsHashMismatch,
)
from pol_core.weights import (
    compute_weights_hash,
    count_learnable,
    get_flat_params,
    process_state_check,
    process_weights_hash_check,
)


def test_weights_hash_covers_batchnorm_buffers(digits):
    state = {k: v.clone() for k, v in digits.genesis_state.items()}
    base = compute_weights_hash(state)
    state["1.running_mean"][0] += 1e-3
    assert compute_weights_hash(state) != base
    state = {k: v.clone() for k, v in digits.genesis_state.items()}
    state["1.num_batches_tracked"] += 1
    assert compute_weights_hash(state) != base


def test_weights_hash_changes_with_one_bit_and_with_names():
    s = {"w": torch.tensor([1.0, 2.0])}
    flipped = {"w": torch.tensor([1.0, torch.nextafter(torch.tensor(2.0), torch.tensor(3.0)).item()])}
    renamed = {"v": torch.tensor([1.0, 2.0])}
    reshaped = {"w": torch.tensor([[1.0, 2.0]])}
    hashes = {compute_weights_hash(x) for x in (s, flipped, renamed, reshaped)}
    assert len(hashes) == 4


def test_weights_hash_is_identical_in_a_fresh_process(digits):
    code = (
        "from pol_core.tasks import load_task; t = load_task('digits-cnn', rules='paper');"
        "print(t.genesis_hash.hex(), t.spec_hash.hex())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [digits.genesis_hash.hex(), digits.spec_hash.hex()]


def test_state_check_rejects_wrong_names_shapes_dtypes_and_nan(digits):
    ref = digits.genesis_state
    ok = {k: v.clone() for k, v in ref.items()}
    process_state_check(ref, ok)
    missing = dict(list(ok.items())[1:])
    with pytest.raises(InvalidWeights, match="names"):
        process_state_check(ref, missing)
    bad_shape = {**ok, "0.weight": torch.zeros(8, 1, 3, 4)}
    with pytest.raises(InvalidWeights, match="0.weight"):
        process_state_check(ref, bad_shape)
    bad_dtype = {**ok, "0.weight": ok["0.weight"].double()}
    with pytest.raises(InvalidWeights):
        process_state_check(ref, bad_dtype)
    nan = {**ok, "1.bias": torch.full_like(ok["1.bias"], float("nan"))}
    with pytest.raises(InvalidWeights, match="NaN"):
        process_state_check(ref, nan)
    with pytest.raises(WeightsHashMismatch):
        process_weights_hash_check(ok, b"\x00" * 32)


def test_digits_task_is_pinned(digits):
    assert digits.config.batch_size == 4 and digits.config.optimizer == "sgd"
    assert digits.train_size + digits.test_x.shape[0] == 1797
    assert digits.num_params == count_learnable(digits.new_model()) == get_flat_params(digits.new_model()).numel()
    # Every pinned ingredient moves the spec hash.
    from dataclasses import replace

    same = compute_spec_hash(digits.config, digits.fingerprint, digits.genesis_hash, digits.num_params)
    assert same == digits.spec_hash
    assert compute_spec_hash(replace(digits.config, lr=0.02), digits.fingerprint, digits.genesis_hash, digits.num_params) != same
    assert compute_spec_hash(digits.config, b"\x01" * 32, digits.genesis_hash, digits.num_params) != same
    assert compute_spec_hash(replace(digits.config, delta_margin=0.0), digits.fingerprint, digits.genesis_hash, digits.num_params) != same


def test_update_is_deterministic_and_plain_sgd(digits):
    idx = [0, 5, 10, 15]
    x, y = digits.batch(idx)
    a, b = digits.new_model(), digits.new_model()
    process_step(a, x, y, digits.config)
    process_step(b, x, y, digits.config)
    assert compute_weights_hash(a.state_dict()) == compute_weights_hash(b.state_dict())
    # Plain SGD: W' = W - lr * grad, matching torch.optim.SGD without momentum.
    c = digits.new_model()
    opt = torch.optim.SGD(c.parameters(), lr=digits.config.lr)
    c.train()
    nn.functional.cross_entropy(c(x), y).backward()
    opt.step()
    assert torch.equal(get_flat_params(a), get_flat_params(c))
    assert int(a.state_dict()["1.num_batches_tracked"]) == 1


@pytest.mark.parametrize("batch,j", [(4, 0), (16, 1), (64, 2), (1024, 4)])
def test_step_lr_scales_by_the_square_root_of_the_batch(digits, batch, j):
    """B = 4^j * S steps at lr * 2^j, exactly (a power of two scales a float without rounding)."""
    assert compute_batch_exponent(digits.config, batch) == j
    assert compute_step_lr(digits.config, batch) == digits.config.lr * 2**j


@pytest.mark.parametrize("batch", [0, 1, 2, 3, 5, 8, 12, 32, 128, 4 * 4**3 + 4])
def test_step_refuses_a_batch_that_is_not_s_times_a_power_of_four(digits, batch):
    with pytest.raises(InvalidBatchSize):
        compute_step_lr(digits.config, batch)


def test_large_batch_step_is_plain_sgd_at_the_scaled_rate(digits):
    x, y = digits.batch(list(range(16)))
    a, ref = digits.new_model(), digits.new_model()
    process_step(a, x, y, digits.config)
    opt = torch.optim.SGD(ref.parameters(), lr=digits.config.lr * 2)
    ref.train()
    nn.functional.cross_entropy(ref(x), y).backward()
    opt.step()
    assert torch.equal(get_flat_params(a), get_flat_params(ref))
    with pytest.raises(InvalidBatchSize):
        process_step(digits.new_model(), *digits.batch(list(range(8))), digits.config)


def test_only_plain_sgd_with_known_rules_and_bounds_is_a_valid_task(digits):
    from dataclasses import replace

    from pol_core.tasks.spec import Task

    for bad in (replace(digits.config, optimizer="adam"), replace(digits.config, lr=0.0),
                replace(digits.config, lr=float("nan")), replace(digits.config, batch_size=0),
                replace(digits.config, rules="chainbound"), replace(digits.config, max_step_batch=8),
                replace(digits.config, max_segment_steps=-1)):
        with pytest.raises(InvalidTaskConfig):
            compute_step_lr(bad, 4)
        with pytest.raises(InvalidTaskConfig):
            Task(bad, digits.raw, digits.new_model)


def test_accuracy_is_an_integer_count_in_eval_mode(digits):
    m = digits.new_model()
    n = compute_correct(m, digits.test_x, digits.test_y, digits.config.eval_batch)
    assert isinstance(n, int) and 0 <= n <= digits.test_x.shape[0]
    assert not m.training


def test_cifar_loader_reads_torchvision_format(tmp_path):
    write_cifar_like(tmp_path, n_train_per_file=4, n_test=6)
    task = load_cifar_task(tmp_path, test_limit=None)
    assert task.train_size == 20 and task.test_x.shape == (6, 3, 32, 32)
    assert 11_000_000 < task.num_params < 11_300_000  # ResNet-18, CIFAR stem
    model = task.new_model()
    assert isinstance(model.maxpool, nn.Identity) and model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    other = tmp_path / "other"
    write_cifar_like(other, n_train_per_file=4, n_test=6, seed=1)
    assert load_cifar_task(other).spec_hash != task.spec_hash  # the dataset fingerprint is pinned


def test_cifar_loader_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_cifar_task(tmp_path)
    from pol_core.tasks import load_task

    with pytest.raises(UnknownTask):
        load_task("cifar10-resnet18")
    with pytest.raises(UnknownTask):
        load_task("mnist")


def test_golden_vectors_match_the_core():
    root = Path(__file__).parent / "vectors"
    rc = subprocess.run([sys.executable, "-m", "pol_core.vectors", "--check", str(root)]).returncode
    assert rc == 0


def test_every_digits_weight_is_live(digits):
    """A weight whose gradient is always zero (a bias before BatchNorm) would make a block unmineable."""
    model = digits.new_model()
    gen = torch.Generator().manual_seed(0)
    moved = torch.zeros(digits.num_params, dtype=torch.bool)
    for _ in range(300):
        idx = torch.randperm(digits.train_size, generator=gen)[:4].tolist()
        before = get_flat_params(model)
        process_step(model, *digits.batch(idx), digits.config)
        moved |= (get_flat_params(model) - before).abs() > digits.config.delta_margin
    assert bool(moved.all()), f"dead weights: {torch.nonzero(~moved).flatten()[:10].tolist()}"
