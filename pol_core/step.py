"""The update (one plain SGD step) and accuracy: the two computations a verifier repeats."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def enable_deterministic_mode() -> None:
    """Verifier settings: deterministic kernels, no TF32, so a recomputation is repeatable."""
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def process_update(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float) -> None:
    """W <- W - lr * grad(mean cross-entropy on B), in train mode, in place.

    Train mode means BatchNorm normalises with the batch's statistics and updates its running
    statistics and counter, which are part of W' and of its hash.
    """
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(x)  # (S, classes)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(p.grad, alpha=-lr)  # plain SGD: no momentum, no weight decay
    model.zero_grad(set_to_none=True)


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
