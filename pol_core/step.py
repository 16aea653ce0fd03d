"""The update (plain SGD steps) and accuracy: the computations a verifier repeats."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .rulesets import RuleSet
from .types import InvalidBatchSize, InvalidTaskConfig

if TYPE_CHECKING:
    from .tasks.spec import TaskConfig


def enable_deterministic_mode() -> None:
    """The set-up of every process that computes consensus arithmetic (verifier, audit, tests,
    benchmarks): deterministic kernels, no TF32, and one thread, so that conv and matmul results do
    not depend on the thread count and any verifier on the same CPU type recomputes W' bit for bit."""
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.set_num_threads(1)


def process_config_check(config: TaskConfig) -> None:
    """Raise unless the task's step is one this module defines."""
    # Only plain SGD (no momentum, no weight decay) is specified; the spec hash pins the name.
    if config.optimizer != "sgd":
        raise InvalidTaskConfig(f"optimizer {config.optimizer!r} is not supported; only 'sgd' is defined")
    # S is the unit every batch size is measured in.
    if config.batch_size < 1:
        raise InvalidTaskConfig(f"batch size S must be positive, got {config.batch_size}")
    # A step of zero, negative or non-finite size moves nothing or destroys the model.
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise InvalidTaskConfig(f"learning rate must be positive and finite, got {config.lr}")
    # The rule set is part of the spec hash; a typo must not silently select the other one.
    if config.rules not in {r.value for r in RuleSet}:
        raise InvalidTaskConfig(f"unknown rule set {config.rules!r}; known: {', '.join(r.value for r in RuleSet)}")
    # Chain-bound segments replay at most this many steps per block (a bound on the verifier's work).
    if config.max_segment_steps < 0:
        raise InvalidTaskConfig(f"max_segment_steps must not be negative, got {config.max_segment_steps}")
    # The largest segment step is itself a step batch, 4^j * S.
    if not is_step_batch_size(config.max_step_batch, config.batch_size):
        raise InvalidTaskConfig(f"max_step_batch {config.max_step_batch} is not 4^j * S (S = {config.batch_size})")


def is_step_batch_size(batch_size: int, s: int) -> bool:
    """B = 4^j * S for some j >= 0: the only batch sizes a step (and a segment step) may have."""
    if s < 1:
        return False
    q, rest = divmod(batch_size, s)
    return batch_size >= s and rest == 0 and q & (q - 1) == 0 and (q.bit_length() - 1) % 2 == 0


def compute_batch_exponent(config: TaskConfig, batch_size: int) -> int:
    """j such that batch_size = 4^j * S; InvalidBatchSize for any other size."""
    s = config.batch_size
    # A step's batch is S times a power of four (1, 4, 16, ...), so its lr scale 2^j is exact.
    if not is_step_batch_size(batch_size, s):
        raise InvalidBatchSize(f"a step's batch must be 4^j * S = {s}, {4 * s}, {16 * s}, ...; got {batch_size}")
    return ((batch_size // s).bit_length() - 1) // 2


def compute_step_lr(config: TaskConfig, batch_size: int) -> float:
    """lr * 2^j for a batch of B = 4^j * S samples: square-root scaling of the task's rate with the
    batch size, exact in binary floating point because 2^j is a power of two."""
    process_config_check(config)
    return math.ldexp(config.lr, compute_batch_exponent(config, batch_size))


def process_update(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float) -> None:
    """W <- W - lr * grad(mean cross-entropy on B), in train mode, in place: the maths of every
    step. Consensus code calls `process_step`, which fixes lr by the batch size.

    Train mode means BatchNorm normalises with the batch's statistics and updates its running
    statistics and counter, which are part of W' and of its hash.
    """
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(x)  # (B, classes)
    loss = F.cross_entropy(logits, y)
    loss.backward()  # type: ignore[no-untyped-call]
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)  # plain SGD: no momentum, no weight decay
    model.zero_grad(set_to_none=True)


def process_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TaskConfig) -> None:
    """The protocol's training step: one plain SGD step on a batch of B = 4^j * S samples at
    lr * 2^j (j = 0 is the step Algorithm 1 takes and the verifier recomputes)."""
    process_update(model, x, y, compute_step_lr(config, int(y.shape[0])))


@torch.no_grad()
def compute_logits(model: nn.Module, x: torch.Tensor, eval_batch: int) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + eval_batch]) for i in range(0, x.shape[0], eval_batch)])  # (N, classes)


@torch.no_grad()
def compute_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eval_batch: int) -> int:
    """accuracy(W, E) as an integer: correct predictions over the whole test set, eval mode."""
    return int((compute_logits(model, x, eval_batch).argmax(dim=1) == y).sum())


@dataclass(frozen=True)
class RobustCount:
    """Correct count plus the predictions close enough to a tie that another device could flip."""

    correct: int
    fragile_correct: int  # correct, but the top-2 logit gap is below the margin
    fragile_wrong: int  # wrong, but within the margin of becoming correct

    @property
    def worst(self) -> int:
        return self.correct - self.fragile_correct

    @property
    def best(self) -> int:
        return self.correct + self.fragile_wrong


@torch.no_grad()
def compute_robust_count(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eval_batch: int, logit_margin: float
) -> RobustCount:
    logits = compute_logits(model, x, eval_batch)  # (N, classes)
    top2 = logits.topk(2, dim=1).values  # (N, 2)
    gap = top2[:, 0] - top2[:, 1]  # (N,)
    correct = logits.argmax(dim=1) == y
    true_logit = logits.gather(1, y[:, None]).squeeze(1)  # (N,)
    near_wrong = (~correct) & (top2[:, 0] - true_logit < logit_margin)
    return RobustCount(
        correct=int(correct.sum()),
        fragile_correct=int((correct & (gap < logit_margin)).sum()),
        fragile_wrong=int(near_wrong.sum()),
    )


def is_robustly_improved(before: RobustCount, after: RobustCount) -> bool:
    """The gain survives even if every fragile prediction flips against the prover."""
    return after.worst > before.best
