"""pol_core: the consensus rules shared by the prover, the verifier service and the contract.

Importing the package is cheap (no torch): each name below loads its module on first use, so a
command line can read the task names and error types before it decides to load a model.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .types import *  # noqa: F401,F403 - the reasons, named exceptions and aliases are the public API

_LAZY = {
    "SegmentProof": "chainbound", "TipContext": "chainbound", "compute_chain_bound_verdict": "chainbound",
    "is_monotone_tip": "chainbound",
    "DifficultyParams": "difficulty", "compute_next_difficulty": "difficulty",
    "Header": "header", "compute_genesis_header": "header", "compute_header_encoding": "header",
    "compute_header_hash": "header", "decode_header": "header",
    "compute_link": "link", "compute_seed": "link", "is_redraw_allowed": "link", "process_redraw_check": "link",
    "compute_requirements": "requirements", "is_requirements_met": "requirements",
    "process_requirements_check": "requirements",
    "is_accuracy_improved": "rules", "is_within_sabotage_guard": "rules", "process_accuracy_rules": "rules",
    "process_chain_position": "rules",
    "RuleSet": "rulesets", "parse_rules": "rulesets", "rules_from_code": "rulesets",
    "process_rules_check": "rulesets",
    "EMPTY_SEGMENT": "segment", "Segment": "segment", "SegmentBounds": "segment",
    "compute_segment_encoding": "segment", "compute_segment_root": "segment", "decode_segment": "segment",
    "process_segment_check": "segment", "process_segment_replay": "segment",
    "compute_correct": "step", "compute_step_lr": "step", "enable_deterministic_mode": "step",
    "process_step": "step", "process_update": "step",
    "Task": "tasks", "load_task": "tasks", "TASK_NAMES": "tasks",
    "Proof": "verify", "Verdict": "verify", "compute_verdict": "verify", "compute_genesis_correct": "verify",
    "compute_weights_hash": "weights", "count_learnable": "weights", "get_flat_params": "weights",
    "get_state": "weights",
}

if TYPE_CHECKING:
    from .chainbound import SegmentProof, TipContext, compute_chain_bound_verdict, is_monotone_tip
    from .difficulty import DifficultyParams, compute_next_difficulty
    from .header import Header, compute_genesis_header, compute_header_encoding, compute_header_hash, decode_header
    from .link import compute_link, compute_seed, is_redraw_allowed, process_redraw_check
    from .requirements import compute_requirements, is_requirements_met, process_requirements_check
    from .rules import is_accuracy_improved, is_within_sabotage_guard, process_accuracy_rules, process_chain_position
    from .rulesets import RuleSet, parse_rules, process_rules_check, rules_from_code
    from .segment import (
        EMPTY_SEGMENT,
        Segment,
        SegmentBounds,
        compute_segment_encoding,
        compute_segment_root,
        decode_segment,
        process_segment_check,
        process_segment_replay,
    )
    from .step import compute_correct, compute_step_lr, enable_deterministic_mode, process_step, process_update
    from .tasks import TASK_NAMES, Task, load_task
    from .verify import Proof, Verdict, compute_genesis_correct, compute_verdict
    from .weights import compute_weights_hash, count_learnable, get_flat_params, get_state


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pol_core' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = sorted(_LAZY)
