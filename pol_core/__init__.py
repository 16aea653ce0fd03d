"""pol_core: the consensus rules shared by the prover, the verifier service and the contract."""
from .header import Header, compute_genesis_header, compute_header_encoding, compute_header_hash, decode_header
from .requirements import compute_requirements, is_requirements_met, process_requirements_check
from .rules import is_accuracy_improved, is_within_sabotage_guard, process_accuracy_rules
from .step import compute_correct, enable_deterministic_mode, process_update
from .tasks import Task, load_task
from .types import *  # noqa: F401,F403 - the named exceptions and aliases are the public API
from .verify import Proof, Verdict, compute_verdict
from .weights import compute_weights_hash, count_learnable, get_flat_params, get_state

__all__ = [
    "Header", "compute_genesis_header", "compute_header_encoding", "compute_header_hash", "decode_header",
    "compute_requirements", "is_requirements_met", "process_requirements_check",
    "is_accuracy_improved", "is_within_sabotage_guard", "process_accuracy_rules",
    "compute_correct", "enable_deterministic_mode", "process_update",
    "Task", "load_task", "Proof", "Verdict", "compute_verdict",
    "compute_weights_hash", "count_learnable", "get_flat_params", "get_state",
]
