"""Fast mode: test many candidate mini-batches from the same W in one batched pass.

C candidates of S samples each are stacked into one batch of C*S. BatchNorm normalises each
candidate's S samples with their own statistics, exactly as a lone S-batch step would, and one
backward pass yields each candidate's gradient at the k required coordinates only:

  conv weight[o,i,a,b]:  g_c = sum over the candidate's samples and output positions of
                         grad_out[n,o,y,x] * x_pad[n,i, y*stride+a, x*stride+b]
  linear weight[o,i]:    g_c = sum_n grad_out[n,o] * x[n,i]
  biases:                g_c = sum of grad_out over the candidate's samples (and positions)
  BatchNorm weight/bias: from per-candidate copies of the two vectors, (C, channels) each

This module only searches: it never changes the model. Training between rounds, and the re-run of
a candidate that meets R, are pol_core's own step (prover/search.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from pol_core.requirements import compute_orientation
from pol_core.tasks import Task
from pol_core.types import Requirement


@dataclass(frozen=True)
class Target:
    """Where one requirement points: a module, which of its tensors, and the flat offset in it."""

    module: nn.Module
    kind: str  # "weight" or "bias"
    offset: int


def locate_targets(model: nn.Module, reqs: list[Requirement]) -> list[Target]:
    spans, start = [], 0
    for mod in model.modules():
        for kind, p in mod.named_parameters(recurse=False):
            spans.append((start, start + p.numel(), mod, kind))
            start += p.numel()
    out = []
    for r in reqs:
        idx = r // 2
        lo, _, mod, kind = next(s for s in spans if s[0] <= idx < s[1])
        if not isinstance(mod, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            raise NotImplementedError(f"fast mode cannot target {type(mod).__name__}")
        out.append(Target(mod, kind, idx - lo))
    return out


class GroupedBatchNorm:
    """Swaps BatchNorm2d.forward for per-candidate statistics with per-candidate affine leaves.
    Running statistics are not touched: the search leaves the model as it found it."""

    def __init__(self, model: nn.Module, groups: int):
        self.groups = groups
        self.bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        self.leaves: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def __enter__(self) -> "GroupedBatchNorm":
        for bn in self.bns:
            w = bn.weight.detach().expand(self.groups, -1).clone().requires_grad_(True)  # (C, ch)
            b = bn.bias.detach().expand(self.groups, -1).clone().requires_grad_(True)
            self.leaves[bn] = (w, b)
            bn.forward = self._make_forward(bn, w, b)  # type: ignore[method-assign,assignment]
        return self

    def _make_forward(self, bn: nn.BatchNorm2d, w: torch.Tensor, b: torch.Tensor
                      ) -> Callable[[torch.Tensor], torch.Tensor]:
        groups = self.groups

        def forward(x: torch.Tensor) -> torch.Tensor:
            n, ch, h, wd = x.shape
            xg = x.view(groups, n // groups, ch, h, wd)  # (C, S, ch, H, W)
            mean = xg.mean(dim=(1, 3, 4), keepdim=True)  # (C, 1, ch, 1, 1)
            var = xg.var(dim=(1, 3, 4), unbiased=False, keepdim=True)
            xhat = (xg - mean) * torch.rsqrt(var + bn.eps)
            y = xhat * w[:, None, :, None, None] + b[:, None, :, None, None]
            return y.view(n, ch, h, wd)

        return forward

    def __exit__(self, *exc: object) -> None:
        for bn in self.bns:
            del bn.forward  # back to the class's forward


class Capture:
    """Forward hooks on the Conv2d/Linear modules that own a required coordinate: their inputs,
    and their outputs, whose gradients the backward pass is asked for."""

    def __init__(self, modules: set[nn.Module]):
        self.inputs: dict[nn.Module, torch.Tensor] = {}
        self.outputs: dict[nn.Module, torch.Tensor] = {}
        self.grads: dict[nn.Module, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook) for m in modules]

    def _hook(self, mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        self.inputs[mod] = inp[0].detach()
        self.outputs[mod] = out

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def compute_target_grad(t: Target, cap: Capture, grads: dict[torch.Tensor, torch.Tensor], bn: GroupedBatchNorm,
                        groups: int) -> torch.Tensor:
    """Per-candidate gradient of the mean loss at one coordinate: shape (C,)."""
    m = t.module
    if isinstance(m, nn.BatchNorm2d):
        w, b = bn.leaves[m]
        return grads[w if t.kind == "weight" else b][:, t.offset]
    g, x = cap.grads[m], cap.inputs[m]
    if isinstance(m, nn.Linear):
        go = g.view(groups, -1, g.shape[-1])  # (C, S, out)
        if t.kind == "bias":
            return go[:, :, t.offset].sum(1)
        o, i = divmod(t.offset, m.in_features)
        return (go[:, :, o] * x.view(groups, -1, x.shape[-1])[:, :, i]).sum(1)
    if not isinstance(m, nn.Conv2d):
        raise NotImplementedError(f"fast mode cannot target {type(m).__name__}")
    go = g.view(groups, -1, *g.shape[1:])  # (C, S, out, Ho, Wo)
    if t.kind == "bias":
        return go[:, :, t.offset].sum((1, 2, 3))
    _, cin, kh, kw = m.weight.shape
    o, rest = divmod(t.offset, cin * kh * kw)
    i, rest = divmod(rest, kh * kw)
    dy, dx = divmod(rest, kw)
    ph, pw = _pair(m.padding)
    sh, sw = _pair(m.stride)
    xp = F.pad(x[:, i], (pw, pw, ph, ph))  # (N, H+2p, W+2p)
    ho, wo = g.shape[-2:]
    patch = xp[:, dy : dy + sh * (ho - 1) + 1 : sh, dx : dx + sw * (wo - 1) + 1 : sw]  # (N, Ho, Wo)
    return (go[:, :, o] * patch.view(groups, -1, ho, wo)).sum((1, 2, 3))


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, str):
        raise NotImplementedError(f"fast mode needs explicit conv padding, got {v!r}")
    return (int(v[0]), int(v[1])) if isinstance(v, tuple) else (int(v), int(v))


class BatchedSearch:
    """Evaluates C candidates per call, from the model's current W, without changing it."""

    def __init__(self, task: Task, model: nn.Module, reqs: list[Requirement], candidates: int,
                 autocast_dtype: torch.dtype | None = None):
        self.task = task
        self.model = model
        self.c = candidates
        self.targets = locate_targets(model, reqs)
        self.sign = compute_orientation(reqs).float()  # (k,)
        self.autocast_dtype = autocast_dtype
        if any(m.groups != 1 or m.dilation != (1, 1) for m in model.modules() if isinstance(m, nn.Conv2d)):
            raise NotImplementedError("fast mode supports ungrouped, undilated convolutions")

    def oriented_deltas(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (C*S, ...), y: (C*S,). Returns (C, k): -lr * g_c * sign, positive = as required."""
        model, c, s = self.model, self.c, self.task.config.batch_size
        model.train()
        cap = Capture({t.module for t in self.targets if not isinstance(t.module, nn.BatchNorm2d)})
        try:
            with GroupedBatchNorm(model, c) as bn:
                with torch.autocast(x.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                    logits = model(x)  # (C*S, classes)
                loss = F.cross_entropy(logits.float(), y, reduction="sum") / s  # sum over candidates of mean losses
                leaves = [leaf for pair in bn.leaves.values() for leaf in pair]
                mods = list(cap.outputs)
                # The gradients at the BatchNorm leaves and at the targets' outputs only: no weight
                # gradient of any layer is formed, which is most of a plain backward's cost.
                got = torch.autograd.grad(loss, leaves + [cap.outputs[m] for m in mods])
                grads = dict(zip(leaves, got[: len(leaves)]))
                cap.grads.update({m: g.detach() for m, g in zip(mods, got[len(leaves):])})
                per_cand = torch.stack([compute_target_grad(t, cap, grads, bn, c) for t in self.targets], dim=1)  # (C, k)
        finally:
            cap.close()
        lr = self.task.config.lr
        return (-lr * per_cand.float().cpu()) * self.sign  # (C, k)
