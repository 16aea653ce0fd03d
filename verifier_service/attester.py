"""The attester: sends every accepted block from the journal to the contract, in order, once."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from pol_chain.client import ChainClient, ChainUnavailable, ContractReverted, StaleParent, TipInfo

from .journal import Journal
from .metrics import Metrics

log = logging.getLogger("pol.verifier")


class Attester:
    """A background loop over the journal's pending blocks. After each pass it reports the chain's
    tip to `on_pass` (None when the chain did not answer), so the node can follow it."""

    def __init__(self, chain: ChainClient, journal: Journal, metrics: Metrics, deploy_block: int,
                 on_pass: Callable[[TipInfo | None], None], retry_max_s: float = 5.0,
                 fault_pause: str | None = None, fault_pause_s: float = 0.0):
        self.chain = chain
        self.journal = journal
        self.metrics = metrics
        self.deploy_block = deploy_block
        self.on_pass = on_pass
        self.retry_max_s = retry_max_s
        self.fault_pause = fault_pause
        self.fault_pause_s = fault_pause_s
        self.reachable = True
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
            try:
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
                self.metrics.chain_up.set(0)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                self._wake.set()
            except Exception:  # noqa: BLE001 - the attester must outlive any single failure
                log.exception("attester error")
                self._stop.wait(1.0)
                self._wake.set()
            self.on_pass(tip)

    def attest_pending(self) -> TipInfo:
        """One pass: attest what extends the chain, record what already landed, orphan the rest.
        Returns the chain's tip afterwards."""
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
            elif chain_tip.link == entry.header.parent:
                self._pause("before_send")
                try:
                    receipt = self.chain.submit_block(entry.header)
                except StaleParent:
                    continue  # re-read the tip on the next pass; the block may have landed
                except ContractReverted as e:
                    log.error("contract refused an accepted block", extra={"block": entry.block_hash.hex(), "error": str(e)})
                    self.journal.mark_orphaned(entry.block_hash)
                    continue
                self._pause("after_send")
                self.journal.mark_attested(entry.block_hash, receipt.tx_hash, receipt.gas_used, receipt.link)
                self.metrics.attest_latency.observe(time.time() - entry.accepted_at)
                log.info("attested", extra={"height": entry.header.height, "tx": receipt.tx_hash, "gas": receipt.gas_used})
            else:
                log.error("pending block no longer extends the chain", extra={"block": entry.block_hash.hex()})
                self.journal.mark_orphaned(entry.block_hash)
        self.metrics.journal_depth.set(len(self.journal.pending()))
        return self.chain.get_tip()
