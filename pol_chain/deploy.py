"""Deploy PoLChain from forge's artifact and record the deployment for the other components."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3

from pol_core.attestation import SignerSet, make_signer_set, process_signer_set_check
from pol_core.rulesets import parse_rules
from pol_core.step import compute_correct
from pol_core.tasks import Task

from .anvil import REPO_ROOT
from .client import ChainClient, ChainError

ARTIFACT = REPO_ROOT / "contracts" / "out" / "PoLChain.sol" / "PoLChain.json"
# A quorum deployment has no single attester: its genesis names the zero address there.
NO_ATTESTER = "0x0000000000000000000000000000000000000000"


@dataclass(frozen=True)
class Deployment:
    rpc_url: str
    chain_id: int
    address: str
    deploy_block: int
    task: str
    genesis: dict[str, Any]
    quorum: dict[str, Any] | None = None  # {"signers": [...], "threshold": t} of the genesis set; None: one attester

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @staticmethod
    def load(path: str | Path) -> "Deployment":
        return Deployment(**json.loads(Path(path).read_text()))

    def client(self, private_key: str | None = None, rpc_url: str | None = None) -> ChainClient:
        return ChainClient(rpc_url or self.rpc_url, self.address, load_abi(), private_key)

    def genesis_signer_set(self) -> SignerSet | None:
        """The signer set fixed at genesis (the chain's current one may differ: `client().get_signer_set()`)."""
        if self.quorum is None:
            return None
        return make_signer_set(self.quorum["signers"], int(self.quorum["threshold"]))


def load_artifact() -> dict[str, Any]:
    # forge writes the artifact; without it there is nothing to deploy.
    if not ARTIFACT.exists():
        raise FileNotFoundError(f"{ARTIFACT} is missing: run `forge build` (./run.sh setup does)")
    return json.loads(ARTIFACT.read_text())


def load_abi() -> list[dict[str, Any]]:
    return load_artifact()["abi"]


def genesis_for_task(task: Task, attester: str, owner: str, difficulty: int | None = None,
                     target_block_time: int = 5, half_life: int | None = None, redraw_after: int | None = None,
                     min_difficulty: int = 1, max_difficulty: int = 64) -> dict[str, Any]:
    """The contract's Genesis for `task`, under the task's rule set. By default one bit of k per ten
    target block times of schedule drift, and a redraw of R every twenty target block times."""
    model = task.new_model()
    correct = compute_correct(model, task.test_x, task.test_y, task.config.eval_batch)
    return {
        "taskSpecHash": "0x" + task.spec_hash.hex(),
        "weightsHash": "0x" + task.genesis_hash.hex(),
        "numParams": task.num_params,
        "batchSize": task.config.batch_size,
        "correct": correct,
        "rules": task.config.rules,
        "sabotageTolerance": task.config.sabotage_tolerance,
        "difficulty": difficulty or task.config.initial_difficulty,
        "minDifficulty": min_difficulty,
        "maxDifficulty": min(max_difficulty, task.num_params // 2, 255),
        "targetBlockTime": target_block_time,
        "halfLife": half_life or 10 * target_block_time,
        "redrawAfter": redraw_after or 20 * target_block_time,
        "attester": Web3.to_checksum_address(attester),
        "owner": Web3.to_checksum_address(owner),
    }


GENESIS_ORDER = ("taskSpecHash", "weightsHash", "numParams", "batchSize", "correct", "rules", "sabotageTolerance",
                 "difficulty", "minDifficulty", "maxDifficulty", "targetBlockTime", "halfLife", "redrawAfter", "attester",
                 "owner")


def compute_genesis_tuple(genesis: dict[str, Any]) -> tuple[Any, ...]:
    """The constructor argument, in the contract's field order (the rule set as its enum code)."""
    def value(k: str) -> Any:
        if k in ("taskSpecHash", "weightsHash"):
            return bytes.fromhex(genesis[k][2:])
        if k == "rules":
            return parse_rules(genesis[k]).code
        return genesis[k]
    return tuple(value(k) for k in GENESIS_ORDER)


def compute_quorum_tuple(quorum: SignerSet | None) -> tuple[list[str], int]:
    """The constructor's second argument: no signers (single-attester mode) or the genesis signer set."""
    if quorum is None:
        return [], 0
    process_signer_set_check(quorum)
    return [Web3.to_checksum_address(bytes(a)) for a in quorum.signers], quorum.threshold


def deploy_chain(rpc_url: str, private_key: str, task_name: str, genesis: dict[str, Any],
                 quorum: SignerSet | None = None) -> Deployment:
    """Deploy with one attester (`genesis["attester"]`), or, given `quorum`, in quorum mode: then blocks need t
    signatures of the set, the genesis attester must be NO_ATTESTER, and the owner may change the set until
    it calls end_bootstrap()."""
    # The contract refuses the mix too; saying it here names the fix.
    if quorum is not None and int(genesis["attester"], 16) != 0:
        raise ChainError("a quorum deployment has no single attester: build its genesis with attester=NO_ATTESTER")
    art = load_artifact()
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    acct = Account.from_key(private_key)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"]["object"])
    g = compute_genesis_tuple(genesis)
    q = compute_quorum_tuple(quorum)
    tx = factory.constructor(g, q).build_transaction({
        "from": acct.address,
        "nonce": w3.eth.get_transaction_count(acct.address, "pending"),
        "chainId": w3.eth.chain_id,
    })
    tx_hash = w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    rcpt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    saved = None if quorum is None else {"signers": q[0], "threshold": q[1]}
    return Deployment(rpc_url, int(w3.eth.chain_id), rcpt["contractAddress"], int(rcpt["blockNumber"]), task_name, genesis,
                      saved)
