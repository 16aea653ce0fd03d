"""A small typed client for PoLChain.sol, in the style of web3.py: one root exception, typed reverts."""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, cast

import requests
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_typing import ABIError, HexStr
from eth_utils.abi import filter_abi_by_type, function_abi_to_4byte_selector, get_abi_input_types
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted, Web3Exception
from web3.logs import DISCARD
from web3.types import RPCEndpoint

from pol.genesis import signer_set_abi_tuple
from pol_core.attestation import (
    Domain,
    Signature,
    SignerSet,
    compute_block_digest,
    compute_quorum_signatures,
    make_signer_set,
)
from pol_core.difficulty import DifficultyParams
from pol_core.header import Header, compute_header_hash, header_from_abi_tuple
from pol_core.link import compute_link
from pol_core.rulesets import RuleSet, rules_from_code
from pol_core.types import Address, Difficulty, Hash32, Height, Timestamp

if TYPE_CHECKING:
    from pol_core.chainbound import TipContext  # loads torch; the client itself must not


# Only these mean "the node did not answer"; any other web3 error is a bug or a bad request.
NETWORK_ERRORS = (OSError, requests.exceptions.RequestException, TimeExhausted)


class ChainError(Exception):
    """Root of every error the chain client raises."""


class ChainUnavailable(ChainError):
    """The JSON-RPC endpoint did not answer."""


class ContractReverted(ChainError):
    """The contract reverted; `data` is the raw revert data, `name`/`args` its decoding when known."""

    def __init__(self, data: bytes, name: str | None = None, args: tuple = ()):
        self.data = data
        self.name = name
        self.args_decoded = args
        super().__init__(f"{name or 'revert'}{args if name else ' 0x' + data.hex()}")


class StaleParent(ContractReverted):
    """The header does not extend the current tip (the contract names it by height)."""

    def __init__(self, data: bytes = b"", name: str | None = None, args: tuple = ()):
        super().__init__(data, name, args)


class WrongHeight(StaleParent):
    """The contract's refusal of a height other than tip + 1: a stale, repeated or early header."""


class NotAttester(ContractReverted):
    pass


class AccuracyNotImproved(ContractReverted):
    pass


class SabotageGuard(ContractReverted):
    pass


class TipRegressed(ContractReverted):
    pass


class IndicesNotAscending(ContractReverted):
    pass


class RedrawTooEarly(ContractReverted):
    pass


class RedrawNotAllowed(ContractReverted):
    pass


class SegmentNotAllowed(ContractReverted):
    pass


class NotOwner(ContractReverted):
    pass


class WrongMode(ContractReverted):
    """The call belongs to the other attestation mode (fixed at genesis)."""


class QuorumMode(WrongMode):
    """A quorum deployment: blocks need submitBlockSigned, and there is no attester to rotate."""


class SingleAttesterMode(WrongMode):
    """A single-attester deployment: it has no signer set."""


class QuorumRefused(ContractReverted):
    """The signatures do not carry the authority of t distinct members of the current signer set."""


class MalformedSignatures(QuorumRefused):
    pass


class WrongThreshold(QuorumRefused):
    pass


class WrongSignerCount(QuorumRefused):
    pass


class NonSignerMismatch(QuorumRefused):
    pass


class InvalidSigner(QuorumRefused):
    """A signature recovers to a non-member: an outsider, another message, another chain id or contract."""


class SignersNotAscending(QuorumRefused):
    pass


class DuplicateSigner(QuorumRefused):
    pass


class MalleableSignature(QuorumRefused):
    pass


class TooFewSignatures(QuorumRefused):
    pass


class BadSignerSet(ContractReverted):
    """A proposed signer set is unusable (size, threshold, order)."""


class SignerCountOutOfRange(BadSignerSet):
    pass


class ThresholdOutOfRange(BadSignerSet):
    pass


class SignerSetNotAscending(BadSignerSet):
    pass


class WrongNonce(ContractReverted):
    """A signed set update for another nonce: replayed, or signed for an earlier set."""


class BootstrapOver(ContractReverted):
    pass


class NotEquivocation(ContractReverted):
    """The evidence does not show one member signing two different headers at one height and redraw index."""


class NotConflicting(NotEquivocation):
    pass


class SameHeader(NotEquivocation):
    pass


class DifferentSigners(NotEquivocation):
    pass


REVERT_TYPES: dict[str, type[ContractReverted]] = {
    "WrongHeight": WrongHeight,
    "NotAttester": NotAttester,
    "AccuracyNotImproved": AccuracyNotImproved,
    "SabotageGuard": SabotageGuard,
    "TipRegressed": TipRegressed,
    "IndicesNotAscending": IndicesNotAscending,
    "RedrawTooEarly": RedrawTooEarly,
    "RedrawNotAllowed": RedrawNotAllowed,
    "SegmentNotAllowed": SegmentNotAllowed,
    "NotOwner": NotOwner,
    **{c.__name__: c for c in (
        QuorumMode, SingleAttesterMode, MalformedSignatures, WrongThreshold, WrongSignerCount, NonSignerMismatch,
        InvalidSigner, SignersNotAscending, DuplicateSigner, MalleableSignature, TooFewSignatures,
        SignerCountOutOfRange, ThresholdOutOfRange, SignerSetNotAscending, WrongNonce, BootstrapOver, NotConflicting,
        SameHeader, DifferentSigners)},
}


@dataclass(frozen=True)
class TipInfo:
    link: Hash32  # the next header's parent and the seed of its R (paper rules: the tip's block hash)
    height: Height
    model_hash: Hash32
    difficulty: Difficulty  # k of the next block
    time: Timestamp  # when the tip was recorded; redraws open from it


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    block_number: int
    gas_used: int
    block_hash: Hash32
    link: Hash32 = Hash32(b"")  # the new tip's link, from the block's log


@dataclass(frozen=True)
class SignerSetInfo:
    signer_set: SignerSet
    nonce: int  # what the next signed update must carry
    bootstrap: bool  # whether the owner may still change the set


@dataclass(frozen=True)
class RecordedBlock:
    block_hash: Hash32
    header: Header
    link: Hash32  # what its child names as parent
    randao: Hash32  # prevrandao mixed into the link (zero under paper rules)
    tx_hash: str
    eth_block: int
    timestamp: int


def load_private_key(key_env: str | None = None, keystore: str | Path | None = None,
                     password_env: str = "POL_KEYSTORE_PASSWORD") -> str:
    """The attester key from an environment variable or an encrypted keystore; never from code."""
    if keystore:
        password = os.environ.get(password_env)
        if password is None:
            raise ChainError(f"keystore {keystore} needs its password in ${password_env}")
        return "0x" + Account.decrypt(Path(keystore).read_text(), password).hex()
    if key_env:
        value = os.environ.get(key_env)
        if not value:
            raise ChainError(f"${key_env} is empty; it must hold the attester's private key")
        return value
    raise ChainError("no key given: pass --key-env VAR or --keystore FILE")


def compute_error_selectors(abi: list[dict[str, Any]]) -> dict[bytes, tuple[str, list[str]]]:
    """Custom-error selector -> (name, argument types), for decoding revert data."""
    errors = filter_abi_by_type("error", cast(Sequence[ABIError], abi))
    return {bytes(function_abi_to_4byte_selector(e)): (e["name"], list(get_abi_input_types(e))) for e in errors}


@contextlib.contextmanager
def errors_translated(rpc_url: str, decode_revert: Callable[[Exception], ContractReverted] | None = None
                      ) -> Iterator[None]:
    """The one place where web3 and network errors become this module's typed exceptions."""
    try:
        yield
    except (ContractCustomError, ContractLogicError) as e:
        raise (decode_revert(e) if decode_revert else ContractReverted(b"", None, (str(e),))) from e
    except NETWORK_ERRORS as e:
        raise ChainUnavailable(f"cannot reach the chain node at {rpc_url} ({describe_network_error(e)})") from e
    except Web3Exception as e:
        raise ChainError(str(e)) from e


def describe_network_error(e: BaseException) -> str:
    """A few words for a failed JSON-RPC request, instead of urllib3's nested repr."""
    if isinstance(e, requests.exceptions.Timeout) or isinstance(e, TimeExhausted):
        return "timed out"
    if isinstance(e, requests.exceptions.ConnectionError):
        return "connection refused" if "refused" in str(e).lower() else "connection failed"
    return f"{type(e).__name__}: {e}"


def get_chain_id(rpc_url: str, timeout: float = 10.0) -> int:
    """The chain id at `rpc_url`; ChainUnavailable when nothing answers there."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    with errors_translated(rpc_url):
        return int(w3.eth.chain_id)


class ChainClient:
    def __init__(self, rpc_url: str, address: str, abi: list[dict[str, Any]], private_key: str | None = None,
                 timeout: float = 30.0, request_timeout: float | None = None):
        # One request waits at most `request_timeout` and is never retried by web3: a hung node must
        # surface as ChainUnavailable in seconds; retrying is the caller's decision (the attester's loop).
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": request_timeout or timeout},
                                         exception_retry_configuration=None))
        self.rpc_url = rpc_url
        self.address = Web3.to_checksum_address(address)
        self.contract = self.w3.eth.contract(address=self.address, abi=abi)
        self.account = Account.from_key(private_key) if private_key else None
        self._errors = compute_error_selectors(abi)
        self._send_lock = threading.Lock()
        self.timeout = timeout
        self._rules: RuleSet | None = None
        self._task: Hash32 | None = None
        self._quorum: bool | None = None
        self._domain: Domain | None = None

    # ── reads ──

    def _errors_translated(self) -> contextlib.AbstractContextManager[None]:
        return errors_translated(self.rpc_url, self.decode_revert)

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """A raw JSON-RPC call through web3's provider (anvil's evm_* methods, for example)."""
        with self._errors_translated():
            resp = self.w3.provider.make_request(RPCEndpoint(method), params or [])
        if "error" in resp:
            raise ChainError(f"{method}: {resp['error']}")
        return resp["result"]

    def _call(self, fn):
        with self._errors_translated():
            return fn.call()

    def get_tip(self) -> TipInfo:
        link, height, model, k, time = self._call(self.contract.functions.tip())
        return TipInfo(Hash32(bytes(link)), Height(int(height)), Hash32(bytes(model)), Difficulty(int(k)),
                       Timestamp(int(time)))

    def get_rules(self) -> RuleSet:
        """The rule set fixed at deployment (cached: it is immutable)."""
        if self._rules is None:
            self._rules = rules_from_code(int(self._call(self.contract.functions.RULES())))
        return self._rules

    def get_task_spec_hash(self) -> Hash32:
        if self._task is None:
            self._task = Hash32(bytes(self._call(self.contract.functions.TASK_SPEC_HASH())))
        return self._task

    def is_quorum(self) -> bool:
        """Whether blocks need t-of-n signatures (fixed at genesis, so cached)."""
        if self._quorum is None:
            self._quorum = bool(self._call(self.contract.functions.QUORUM()))
        return self._quorum

    def get_domain(self) -> Domain:
        """The EIP-712 domain signatures for this deployment are made under (EIP-5267, cached)."""
        if self._domain is None:
            _, name, version, chain_id, contract, _, _ = self._call(self.contract.functions.eip712Domain())
            self._domain = Domain(int(chain_id), Address(bytes.fromhex(contract[2:])), name, version)
        return self._domain

    def get_signer_set(self) -> SignerSetInfo:
        """The current signer set, its threshold, the next update's nonce and whether bootstrap lasts."""
        signers, threshold, nonce = self._call(self.contract.functions.signerSet())
        bootstrap = bool(self._call(self.contract.functions.bootstrapActive()))
        return SignerSetInfo(make_signer_set(list(signers), int(threshold)), int(nonce), bootstrap)

    def get_block_digest(self, header: Header) -> Hash32:
        """What a member signs to attest `header` on this deployment (computed locally)."""
        return compute_block_digest(self.get_domain(), compute_header_hash(header))

    def get_redraw_after(self) -> int:
        return int(self._call(self.contract.functions.REDRAW_AFTER()))

    def get_difficulty_params(self) -> DifficultyParams:
        """The difficulty rule's genesis anchors, as the contract holds them."""
        f = self.contract.functions
        return DifficultyParams(
            int(self._call(f.INITIAL_DIFFICULTY())), int(self._call(f.MIN_DIFFICULTY())),
            int(self._call(f.MAX_DIFFICULTY())), int(self._call(f.TARGET_BLOCK_TIME())),
            int(self._call(f.HALF_LIFE())), Timestamp(int(self._call(f.GENESIS_TIME()))))

    def get_tip_context(self, header: Header | None = None, from_block: int = 0) -> TipContext:
        """What a chain-bound verdict needs about the tip: its header (rebuilt from the logs unless the
        caller already has it), its link, the k of the next block, its time, the latest chain time and
        redrawAfter."""
        from pol_core.chainbound import TipContext

        tip = self.get_tip()
        if header is None:
            rec = self.find_by_link(tip.link, from_block)
            # The tip's link is in its log; a missing log means a node that pruned it.
            if rec is None:
                raise ChainError(f"no BlockAttested log has link 0x{tip.link.hex()}")
            header = rec.header
        return TipContext(header, tip.link, Difficulty(tip.difficulty), tip.time, Timestamp(self.get_timestamp()),
                          self.get_redraw_after())

    def get_redraw_requirements(self, j: int) -> list[int]:
        return [int(r) for r in self._call(self.contract.functions.redrawRequirements(j))]

    def get_latest_model_hash(self) -> Hash32:
        return Hash32(bytes(self._call(self.contract.functions.latestModelHash())))

    def get_tip_correct(self) -> int:
        return int(self._call(self.contract.functions.tipCorrect()))

    def get_difficulty(self) -> int:
        return int(self._call(self.contract.functions.difficulty()))

    def get_requirements(self, seed: bytes) -> list[int]:
        return [int(r) for r in self._call(self.contract.functions.requirements(bytes(seed)))]

    def get_next_requirements(self) -> list[int]:
        return [int(r) for r in self._call(self.contract.functions.nextRequirements())]

    def compute_requirements(self, seed: bytes, k: int, num_params: int) -> list[int]:
        return [int(r) for r in self._call(self.contract.functions.computeRequirements(bytes(seed), k, num_params))]

    def get_code_size(self) -> int:
        """Bytes of code at the contract's address (0: nothing deployed there, e.g. after a reset)."""
        with self._errors_translated():
            return len(self.w3.eth.get_code(self.address))

    def get_attester(self) -> str:
        """The single attester's address (the zero address on a quorum chain)."""
        return str(self._call(self.contract.functions.attester()))

    def is_attester(self, address: str) -> bool:
        return bool(self._call(self.contract.functions.isAttester(Web3.to_checksum_address(address))))

    def get_genesis_hash(self) -> Hash32:
        return Hash32(bytes(self._call(self.contract.functions.GENESIS_HASH())))

    # ── writes ──

    def decode_revert(self, e: Exception) -> ContractReverted:
        raw = getattr(e, "data", None)
        if isinstance(raw, dict):
            raw = raw.get("data")
        data = bytes.fromhex(raw[2:]) if isinstance(raw, str) and raw.startswith("0x") else b""
        if len(data) >= 4 and data[:4] in self._errors:
            name, types = self._errors[data[:4]]
            args = tuple(abi_decode(types, data[4:]))
            return REVERT_TYPES.get(name, ContractReverted)(data, name, args)
        return ContractReverted(data, None, (str(e),))

    def _transact(self, fn) -> Receipt:
        if self.account is None:
            raise ChainError("this client has no key; it can only read")
        with self._send_lock, self._errors_translated():
            # Headroom over the estimate: the block's prevrandao is not known yet.
            estimate = self._estimate_gas(fn, self.account.address)
            tx = fn.build_transaction({
                "from": self.account.address,
                "nonce": self.w3.eth.get_transaction_count(self.account.address, "pending"),
                "chainId": self.w3.eth.chain_id,
                "gas": estimate + estimate // 4 + 20_000,
            })
            signed = self.account.sign_transaction(tx)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            rcpt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout)
        if rcpt["status"] != 1:
            raise ContractReverted(b"", None, (f"transaction {tx_hash.hex()} reverted",))
        return Receipt("0x" + bytes(tx_hash).hex().removeprefix("0x"), int(rcpt["blockNumber"]), int(rcpt["gasUsed"]),
                       Hash32(b""))

    @staticmethod
    def _estimate_gas(fn, sender: str) -> int:
        """At the pending block: the one the transaction lands in. A node that mines on demand (anvil)
        keeps `latest` at the last transaction's time, where an open redraw still reads RedrawTooEarly.
        A node that does not take the `pending` tag is asked at `latest` (the attester sends a redraw it
        refuses there again, since time only moves on)."""
        try:
            return int(fn.estimate_gas({"from": sender}, "pending"))
        except (ContractCustomError, ContractLogicError):
            raise  # a revert at the pending block is the answer
        except Web3Exception:
            return int(fn.estimate_gas({"from": sender}))

    def submit_block(self, header: Header, check_tip: bool = True) -> Receipt:
        """Attest `header`; returns once the receipt is in. Reverts arrive as typed exceptions.

        The contract supplies parent (the tip's link), task and k itself, so a header built for another
        tip is refused here before it is sent (StaleParent; `check_tip=False` leaves it to the contract's
        height check), and the recorded hash is checked after."""
        if check_tip:
            self.process_header_check(header)
        return self._submit(header, self.contract.functions.submitBlock(*submission_arguments(header)))

    def submit_block_signed(self, header: Header, signatures: Mapping[bytes, bytes], check_tip: bool = True) -> Receipt:
        """Relay `header` with members' signatures (address -> 64-byte compact signature over
        `get_block_digest(header)`); any account may send it. They are packed against the current set."""
        return self.submit_block_packed(header, compute_quorum_signatures(self.get_signer_set().signer_set, signatures),
                                        check_tip)

    def submit_block_packed(self, header: Header, packed: bytes, check_tip: bool = True) -> Receipt:
        """Relay `header` with the contract's `signatures` argument as given (see pol_core.attestation)."""
        if check_tip:
            self.process_header_check(header)
        return self._submit(header, self.contract.functions.submitBlockSigned(*submission_arguments(header), packed))

    def _submit(self, header: Header, fn) -> Receipt:
        r = self._transact(fn)
        expected = compute_header_hash(header)
        recorded, link = self._attested_in(r.tx_hash)
        # Only a race with another attester could make these differ; then the chain holds another block.
        if recorded != expected:
            raise ChainError(f"the contract recorded 0x{recorded.hex()}, not the header's 0x{expected.hex()}")
        return Receipt(r.tx_hash, r.block_number, r.gas_used, expected, link)

    def process_header_check(self, header: Header) -> None:
        tip = self.get_tip()
        # The contract would hash its own tip link, task and k: a header with others is not this block.
        if header.parent != tip.link or header.height != tip.height + 1:
            raise StaleParent(b"", "StaleParent", (tip.link, tip.height + 1))
        if header.difficulty != tip.difficulty:
            raise StaleParent(b"", "WrongDifficulty", (tip.difficulty, header.difficulty))
        if header.task_spec_hash != self.get_task_spec_hash():
            raise ChainError(f"header is for task 0x{header.task_spec_hash.hex()}, the contract for "
                             f"0x{self.get_task_spec_hash().hex()}")

    def _attested_in(self, tx_hash: str) -> tuple[Hash32, Hash32]:
        """(block hash, link) of the BlockAttested log of a transaction."""
        with self._errors_translated():
            rcpt = self.w3.eth.get_transaction_receipt(HexStr(tx_hash))
            events = self.contract.events.BlockAttested().process_receipt(rcpt, errors=DISCARD)
        # A successful submitBlock emits exactly one BlockAttested.
        if len(events) != 1:
            raise ChainError(f"transaction {tx_hash} has {len(events)} BlockAttested logs")
        block_hash = Hash32(bytes(events[0]["args"]["blockHash"]))
        randao = Hash32(int(events[0]["args"]["randao"]).to_bytes(32, "big"))
        return block_hash, compute_link(self.get_rules(), block_hash, randao)

    def set_attester(self, address: str) -> Receipt:
        """Owner only: rotate the attester."""
        return self._transact(self.contract.functions.setAttester(Web3.to_checksum_address(address)))

    def set_signer_set(self, signer_set: SignerSet) -> Receipt:
        """Owner only, while the bootstrap phase lasts: replace the signer set."""
        return self._transact(self.contract.functions.setSignerSet(*signer_set_abi_tuple(signer_set)))

    def end_bootstrap(self) -> Receipt:
        """Owner only, for good: from now on only signed updates change the set."""
        return self._transact(self.contract.functions.endBootstrap())

    def update_signer_set(self, update: SignerSet, signatures: Mapping[bytes, bytes], nonce: int | None = None) -> Receipt:
        """Replace the set with the consent of t current members: each signs
        compute_signer_set_update_digest(get_domain(), update, nonce); the nonce defaults to the chain's."""
        current = self.get_signer_set()
        packed = compute_quorum_signatures(current.signer_set, signatures)
        return self.update_signer_set_packed(update, current.nonce if nonce is None else nonce, packed)

    def update_signer_set_packed(self, update: SignerSet, nonce: int, packed: bytes) -> Receipt:
        """The signed update with the contract's `signatures` argument as given (see pol_core.attestation)."""
        return self._transact(self.contract.functions.updateSignerSet(*signer_set_abi_tuple(update), nonce, packed))

    def report_equivocation(self, a: Header, signature_a: Signature, b: Header, signature_b: Signature) -> Receipt:
        """Evidence that one member signed both headers (one height, one redraw index): it leaves the set,
        unless that would leave fewer members than the threshold. Any account may send it."""
        return self._transact(self.contract.functions.reportEquivocation(a.as_abi_tuple(), bytes(signature_a),
                                                                         b.as_abi_tuple(), bytes(signature_b)))

    def find_transaction(self, block_hash: bytes, from_block: int = 0) -> RecordedBlock | None:
        """The recorded block with this hash, if the chain has it (used to resume after a crash)."""
        for b in self.get_blocks(from_block):
            if b.block_hash == block_hash:
                return b
        return None

    # ── history ──

    def get_blocks(self, from_block: int = 0) -> list[RecordedBlock]:
        """Rebuild the chain from BlockAttested events, genesis first."""
        with self._errors_translated():
            logs = self.contract.events.BlockAttested().get_logs(from_block=from_block)
        out, stamps = [], {}
        rules = self.get_rules()
        for log in logs:
            n = int(log["blockNumber"])
            if n not in stamps:
                with self._errors_translated():
                    stamps[n] = int(self.w3.eth.get_block(n)["timestamp"])
            header = header_from_abi_tuple(tuple(log["args"]["header"].values()))
            block_hash = Hash32(bytes(log["args"]["blockHash"]))
            randao = Hash32(int(log["args"]["randao"]).to_bytes(32, "big"))
            out.append(RecordedBlock(block_hash, header, compute_link(rules, block_hash, randao), randao,
                                     "0x" + bytes(log["transactionHash"]).hex().removeprefix("0x"), n, stamps[n]))
        return out

    def find_by_link(self, link: bytes, from_block: int = 0) -> RecordedBlock | None:
        """The recorded block whose link is `link` (the parent a header names)."""
        return next((b for b in self.get_blocks(from_block) if b.link == link), None)

    def get_timestamp(self) -> int:
        """The chain's time as a transaction sent now would see it: the pending block's timestamp. A node
        that mines on demand (anvil) keeps `latest` at the last transaction's time, and judging a redraw by
        that would keep it closed for as long as no block lands, which is exactly when it must open."""
        with self._errors_translated():
            latest = int(self.w3.eth.get_block("latest")["timestamp"])
            try:
                pending = int(self.w3.eth.get_block("pending")["timestamp"])
            except (Web3Exception, ValueError):  # a node without a pending block: the last one is the best bound
                pending = latest
            return max(latest, pending)


def submission_arguments(header: Header) -> tuple[Any, ...]:
    """(height, W, W', segment root, P, correctBefore, correctAfter, j, miner): the header fields a submission
    sends, in the contract's order (it supplies parent, task and k itself)."""
    return header.as_abi_tuple()[3:]

