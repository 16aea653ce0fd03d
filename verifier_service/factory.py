"""Build a verifier node's collaborators from a config, for `pol verifier serve`."""
from __future__ import annotations

from pathlib import Path

from pol_chain.client import ChainClient
from pol_chain.deploy import Deployment, load_abi
from pol_core.tasks import Task, load_task

from .config import VerifierConfig
from .evaluation import make_evaluator
from .journal import Journal, ModelStore
from .metrics import Metrics
from .evaluation.serial import InProcessEvaluator
from .node import VerifierNode
from .verdicts import TaskRef, make_verdict_pool


def build_node(cfg: VerifierConfig, private_key: str, task: Task | None = None,
               deployment: Deployment | None = None) -> VerifierNode:
    """The deployment from `cfg.deployment`, its task (unless given), a chain client with the
    attester's key, and the journal and model store under `cfg.data_root`."""
    dep = deployment or Deployment.load(cfg.deployment)
    task = task or load_task(dep.task, cfg.data_dir, test_limit=cfg.test_limit, rules=dep.genesis.rules.value)
    root = Path(cfg.data_root)
    chain = ChainClient(cfg.rpc_url or dep.rpc_url, dep.address, load_abi(), private_key,
                        request_timeout=cfg.rpc_timeout_s)
    evaluator = make_evaluator(cfg.eval_workers, cfg.ray_address, cfg.ray_actors, task)
    ref = TaskRef(dep.task, cfg.data_dir, cfg.test_limit, dep.genesis.rules.value)
    verdicts = make_verdict_pool(cfg.verdict_workers, task, ref, isinstance(evaluator, InProcessEvaluator),
                                 cfg.max_concurrent_verifications)
    return VerifierNode(task=task, deployment=dep, chain=chain,
                        journal=Journal(root / "journal.sqlite"), models=ModelStore(root / "models"),
                        metrics=Metrics(), cfg=cfg, evaluator=evaluator, verdicts=verdicts)
