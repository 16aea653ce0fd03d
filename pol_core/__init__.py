"""pol_core: the consensus rules shared by the prover, the verifier service and the contract."""
from .chainbound import SegmentProof, TipContext, compute_chain_bound_verdict, is_monotone_tip
from .difficulty import DifficultyParams, compute_next_difficulty
from .header import Header, compute_genesis_header, compute_header_encoding, compute_header_hash, decode_header
from .link import compute_link, compute_seed, is_redraw_allowed, process_redraw_check
from .requirements import compute_requirements, is_requirements_met, process_requirements_check
from .rules import is_accuracy_improved, is_within_sabotage_guard, process_accuracy_rules
from .rulesets import RuleSet, parse_rules
from .segment import (
    EMPTY_SEGMENT,
    Segment,
    SegmentBounds,
    compute_segment_encoding,
    compute_segment_root,
    compute_step_lr,
    decode_segment,
    process_segment_check,
    process_segment_replay,
)
from .step import compute_correct, enable_deterministic_mode, process_update
from .tasks import Task, load_task
from .types import *  # noqa: F401,F403 - the named exceptions and aliases are the public API
from .verify import Proof, Verdict, compute_verdict
from .weights import compute_weights_hash, count_learnable, get_flat_params, get_state

__all__ = [
    "SegmentProof", "TipContext", "compute_chain_bound_verdict", "is_monotone_tip",
    "DifficultyParams", "compute_next_difficulty",
    "compute_link", "compute_seed", "is_redraw_allowed", "process_redraw_check",
    "RuleSet", "parse_rules",
    "EMPTY_SEGMENT", "Segment", "SegmentBounds", "compute_segment_encoding", "compute_segment_root",
    "compute_step_lr", "decode_segment", "process_segment_check", "process_segment_replay",
    "Header", "compute_genesis_header", "compute_header_encoding", "compute_header_hash", "decode_header",
    "compute_requirements", "is_requirements_met", "process_requirements_check",
    "is_accuracy_improved", "is_within_sabotage_guard", "process_accuracy_rules",
    "compute_correct", "enable_deterministic_mode", "process_update",
    "Task", "load_task", "Proof", "Verdict", "compute_verdict",
    "compute_weights_hash", "count_learnable", "get_flat_params", "get_state",
]
