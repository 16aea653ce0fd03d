"""The attester: sends every accepted block from the journal to the contract, in order, once; keeps
the journal reconciled with the chain; and says what stops accepted blocks from landing (health)."""
from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pol_chain.client import (ChainClient, ChainError, ChainUnavailable, ContractReverted, Receipt, RecordedBlock,
                              RedrawTooEarly, StaleParent, TipInfo)
from pol_core.attestation import QuorumNotMet, compute_quorum_signatures

from .journal import Journal, JournalEntry
from .metrics import Metrics

if TYPE_CHECKING:
    from .quorum import QuorumMember

log = logging.getLogger("pol.verifier")


class Attester:
    """A background loop over the journal's pending blocks. After each pass it reports the chain's
    tip to `on_pass` (None when the chain did not answer), so the node can follow it."""

    def __init__(self, chain: ChainClient, journal: Journal, metrics: Metrics, deploy_block: int,
                 on_pass: Callable[[TipInfo | None], None], retry_max_s: float = 5.0,
                 fault_pause: str | None = None, fault_pause_s: float = 0.0, max_pending_age_s: float = 120.0,
                 min_free_bytes: int = 0, hung_after_s: float = 10.0, quorum: QuorumMember | None = None):
        self.chain = chain
        self.journal = journal
        self.metrics = metrics
        self.deploy_block = deploy_block
        self.on_pass = on_pass
        self.retry_max_s = retry_max_s
        self.fault_pause = fault_pause
        self.fault_pause_s = fault_pause_s
        self.max_pending_age_s = max_pending_age_s
        self.min_free_bytes = min_free_bytes
        self.hung_after_s = hung_after_s
        self.quorum = quorum  # quorum mode: blocks go out with t members' signatures (submitBlockSigned)
        self.reachable = True
        self._chain_problems: list[str] = []  # from the last pass: what the chain said
        self._local_problems: list[str] = []  # from the last pass: the journal's disk
        self._pass_started: float | None = None  # monotonic, while a pass runs
        self._expected_tip: tuple[bytes, int] | None = None  # None: reconcile on the next pass
        self._refused: set[bytes] = set()  # blocks the contract reverted: never sent again
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="attester", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    # ── health ──

    def problems(self) -> list[str]:
        """Why accepted blocks cannot land now; empty when they can. Cheap: flags and one query."""
        out = list(self._chain_problems) + list(self._local_problems)
        if self.quorum is not None:  # too few peers (or not a member): no block can gather t signatures
            out += self.quorum.problems()
        started = self._pass_started
        # A pass stuck in a call is a hung node even before its request times out.
        if started is not None and time.monotonic() - started > self.hung_after_s:
            out.append(f"the chain node has not answered for {time.monotonic() - started:.0f} s")
        oldest = self.journal.oldest_pending_at()
        if oldest is not None:
            if not self._thread.is_alive():
                out.append("the attester stopped with blocks pending")
            age = time.time() - oldest
            if age > self.max_pending_age_s:
                out.append(f"an accepted block has waited {age:.0f} s for its receipt "
                           f"(more than max_pending_age_s = {self.max_pending_age_s:g})")
        return out

    def _check_chain(self) -> list[str]:
        """What the contract says about this verifier; ChainUnavailable when the node does not answer."""
        if self.chain.get_code_size() == 0:
            return [f"no contract code at {self.chain.address} (was the chain reset?)"]
        account = self.chain.account
        if self.quorum is not None:
            return []  # membership is the quorum's problem (QuorumMember.problems), from its cached set
        if account is not None and not self.chain.is_attester(account.address):
            return [f"the key {account.address} is not the contract's attester"]
        return []

    def _check_local(self) -> list[str]:
        out = []
        try:
            self.journal.probe_writable()
        except sqlite3.Error as e:
            out.append(f"the journal {self.journal.path} cannot be written: {e}")
        free = shutil.disk_usage(Path(self.journal.path).parent).free
        if free < self.min_free_bytes:
            out.append(f"{free >> 20} MiB free under {self.journal.path.parent} (less than min_free_bytes)")
        return out

    # ── the loop ──

    def _pause(self, point: str) -> None:
        """Fault injection for the crash tests: hold still at `point` for a while."""
        if self.fault_pause == point and self.fault_pause_s > 0:
            log.warning("fault injection: pausing", extra={"point": point, "seconds": self.fault_pause_s})
            time.sleep(self.fault_pause_s)

    def _loop(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            tip: TipInfo | None = None
            self._pass_started = time.monotonic()
            try:
                self._local_problems = self._check_local()
                self._chain_problems = self._check_chain()
                if not self._chain_problems:
                    tip = self.attest_pending()
                if not self.reachable:
                    log.info("chain reachable again")
                self.reachable = True
                self.metrics.chain_up.set(1)
                backoff = 0.1
            except ChainUnavailable as e:
                if self.reachable:
                    log.warning("chain unreachable; accepted blocks wait in the journal: %s", e)
                self.reachable = False
                self._chain_problems = [str(e)]
                self.metrics.chain_up.set(0)
                self._pass_started = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                self._wake.set()
            except Exception as e:  # noqa: BLE001 - the attester must outlive any single failure
                log.exception("attester error")
                self._chain_problems = [f"attester error: {type(e).__name__}: {e}"]
                self._pass_started = None
                self._stop.wait(1.0)
                self._wake.set()
            self._pass_started = None
            self.on_pass(tip)

    # ── reconciliation ──

    def reconcile(self) -> None:
        """Rebuild the view of the chain from the contract's events: attested rows that left it are
        reorged; rows of any status that are on it are attested."""
        canonical: dict[bytes, RecordedBlock] = {b.block_hash: b for b in self.chain.get_blocks(self.deploy_block)}
        for e in self.journal.with_status("attested"):
            if e.block_hash not in canonical:
                log.warning("block rolled back by the chain", extra={"height": e.header.height,
                                                                     "block": e.block_hash.hex()})
                self.journal.mark_reorged(e.block_hash)
        for e in self.journal.with_status("reorged", "orphaned", "pending", "cosigned"):
            rec = canonical.get(e.block_hash)
            if rec is not None:
                self.journal.mark_attested(e.block_hash, rec.tx_hash, e.gas_used, rec.link)

    def is_refused(self, block_hash: bytes) -> bool:
        """Whether the contract reverted this block: it is never sent again (until a restart)."""
        return block_hash in self._refused

    def _repend(self, tip: TipInfo) -> bool:
        """Mark for sending the first rolled-back (or orphaned) block whose parent is the tip again."""
        for e in self.journal.with_status("reorged", "orphaned"):
            if e.block_hash in self._refused:
                continue
            if e.header.parent == tip.link and e.header.height == tip.height + 1 and e.header.difficulty == tip.difficulty:
                log.info("re-attesting a rolled-back block", extra={"height": e.header.height,
                                                                    "block": e.block_hash.hex()})
                self.journal.mark_pending(e.block_hash)
                return True
        return False

    def attest_pending(self) -> TipInfo:
        """One pass: reconcile when the chain's tip is not the one expected, re-queue rolled-back blocks
        that extend the tip again, then attest what extends the chain, record what already landed,
        orphan the rest. Returns the chain's tip afterwards."""
        tip = self.chain.get_tip()
        if self._expected_tip != (tip.link, tip.height):
            self.reconcile()  # at start-up, after a rollback, or after another attester's block
            self._expected_tip = (tip.link, tip.height)
        while True:
            self._attest_queue()
            tip = self.chain.get_tip()
            self._expected_tip = (tip.link, tip.height)
            if not self._repend(tip):
                break
        self.metrics.journal_depth.set(len(self.journal.pending()))
        return tip

    def _send(self, entry: JournalEntry) -> Receipt:
        q = self.quorum
        if q is None:
            return self.chain.submit_block(entry.header)
        # The contract's set now (a member may have been removed since it signed), packed in its ascending
        # order (pol_core.attestation.compute_quorum_signatures).
        current = self.chain.get_signer_set().signer_set
        held = q.signatures_for(entry.block_hash, current.signers)
        # Exactly t: each signature beyond t costs an ecrecover and its calldata (about 4k gas) and proves
        # nothing more. Its own first, then the others in the set's order.
        order = sorted(held, key=lambda a: (a != q.address, a))
        signatures = {a: held[a] for a in order[:current.threshold]}
        return self.chain.submit_block_packed(entry.header, compute_quorum_signatures(current, signatures))

    def _attest_queue(self) -> None:
        for entry in self.journal.pending():
            chain_tip = self.chain.get_tip()
            # A block at this height is on chain already: ours, sent before a crash (record it, never send
            # it again), or another attester's. Heights, not links: a chain-bound link is known only
            # after inclusion, since it mixes in that block's prevrandao.
            if chain_tip.height >= entry.header.height:
                rec = self.chain.find_transaction(entry.block_hash, self.deploy_block)
                if rec is not None:
                    self.journal.mark_attested(entry.block_hash, rec.tx_hash, None, rec.link)
                else:
                    log.error("another block holds this height", extra={"block": entry.block_hash.hex()})
                    self.journal.mark_orphaned(entry.block_hash)
            elif chain_tip.link == entry.header.parent and chain_tip.difficulty != entry.header.difficulty:
                # The contract would hash another k: this header can never be recorded.
                log.error("pending block committed k=%d, the chain now asks k=%d", entry.header.difficulty,
                          chain_tip.difficulty, extra={"block": entry.block_hash.hex()})
                self.journal.mark_orphaned(entry.block_hash)
            elif chain_tip.link == entry.header.parent:
                self._pause("before_send")
                try:
                    receipt = self._send(entry)
                except QuorumNotMet as e:  # members removed since it was signed: t signatures no longer
                    log.error("a co-signed block lost its quorum", extra={"block": entry.block_hash.hex(), "error": str(e)})
                    self.journal.mark_orphaned(entry.block_hash)
                    continue
                except StaleParent:
                    continue  # re-read the tip on the next pass; the block may have landed
                except RedrawTooEarly as e:
                    # The verifier judged the redraw open by the next block's time; a node whose clock
                    # lags (or an estimate run at `latest`) refuses it until then. Time only moves on.
                    log.warning("redraw not open yet on chain; sending again", extra={
                        "block": entry.block_hash.hex(), "error": str(e)})
                    continue
                except ContractReverted as e:
                    log.error("contract refused an accepted block", extra={"block": entry.block_hash.hex(), "error": str(e)})
                    self.journal.mark_orphaned(entry.block_hash)
                    self._refused.add(entry.block_hash)
                    continue
                except ChainError as e:
                    if isinstance(e, ChainUnavailable):
                        raise
                    log.error("attestation failed", extra={"block": entry.block_hash.hex(), "error": str(e)})
                    continue
                self._pause("after_send")
                self.journal.mark_attested(entry.block_hash, receipt.tx_hash, receipt.gas_used, receipt.link)
                self.metrics.attest_latency.observe(time.time() - entry.accepted_at)
                log.info("attested", extra={"height": entry.header.height, "tx": receipt.tx_hash, "gas": receipt.gas_used})
            else:
                log.error("pending block no longer extends the chain", extra={"block": entry.block_hash.hex()})
                self.journal.mark_orphaned(entry.block_hash)
