"""Deploy PoLChain from forge's artifact and record the deployment for the other components."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3

from pol_core.step import compute_correct
from pol_core.tasks import Task

from .anvil import REPO_ROOT
from .client import ChainClient

ARTIFACT = REPO_ROOT / "contracts" / "out" / "PoLChain.sol" / "PoLChain.json"


@dataclass(frozen=True)
class Deployment:
    rpc_url: str
    chain_id: int
    address: str
    deploy_block: int
    task: str
    genesis: dict[str, Any]

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @staticmethod
    def load(path: str | Path) -> "Deployment":
        return Deployment(**json.loads(Path(path).read_text()))

    def client(self, private_key: str | None = None, rpc_url: str | None = None) -> ChainClient:
        return ChainClient(rpc_url or self.rpc_url, self.address, load_abi(), private_key)


def load_artifact() -> dict[str, Any]:
    # forge writes the artifact; without it there is nothing to deploy.
    if not ARTIFACT.exists():
        raise FileNotFoundError(f"{ARTIFACT} is missing: run `forge build` (./run.sh setup does)")
    return json.loads(ARTIFACT.read_text())


def load_abi() -> list[dict[str, Any]]:
    return load_artifact()["abi"]


def genesis_for_task(task: Task, attester: str, owner: str, difficulty: int | None = None,
                     retarget_interval: int = 10, target_block_time: int = 5, min_difficulty: int = 1,
                     max_difficulty: int = 64, max_retarget_step: int = 2) -> dict[str, Any]:
    model = task.new_model()
    correct = compute_correct(model, task.test_x, task.test_y, task.config.eval_batch)
    return {
        "taskSpecHash": "0x" + task.spec_hash.hex(),
        "weightsHash": "0x" + task.genesis_hash.hex(),
        "numParams": task.num_params,
        "batchSize": task.config.batch_size,
        "correct": correct,
        "sabotageTolerance": task.config.sabotage_tolerance,
        "difficulty": difficulty or task.config.initial_difficulty,
        "minDifficulty": min_difficulty,
        "maxDifficulty": min(max_difficulty, task.num_params // 2, 255),
        "maxRetargetStep": max_retarget_step,
        "retargetInterval": retarget_interval,
        "targetBlockTime": target_block_time,
        "attester": Web3.to_checksum_address(attester),
        "owner": Web3.to_checksum_address(owner),
    }


GENESIS_ORDER = ("taskSpecHash", "weightsHash", "numParams", "batchSize", "correct", "sabotageTolerance", "difficulty",
                 "minDifficulty", "maxDifficulty", "maxRetargetStep", "retargetInterval", "targetBlockTime", "attester",
                 "owner")


def deploy_chain(rpc_url: str, private_key: str, task_name: str, genesis: dict[str, Any]) -> Deployment:
    art = load_artifact()
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    acct = Account.from_key(private_key)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"]["object"])
    g = tuple(bytes.fromhex(genesis[k][2:]) if k in ("taskSpecHash", "weightsHash") else genesis[k] for k in GENESIS_ORDER)
    tx = factory.constructor(g).build_transaction({
        "from": acct.address,
        "nonce": w3.eth.get_transaction_count(acct.address, "pending"),
        "chainId": w3.eth.chain_id,
    })
    tx_hash = w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    rcpt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    return Deployment(rpc_url, int(w3.eth.chain_id), rcpt["contractAddress"], int(rcpt["blockNumber"]), task_name, genesis)
