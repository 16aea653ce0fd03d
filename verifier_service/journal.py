"""Durable state: an SQLite journal of accepted blocks and a content-addressed model store."""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from pol.wire import decode_state, encode_state
from pol_core.header import Header, compute_header_encoding, decode_header
from pol_core.weights import compute_weights_hash

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
  hash BLOB PRIMARY KEY,
  height INTEGER NOT NULL,
  parent BLOB NOT NULL,
  proof_id BLOB NOT NULL UNIQUE,
  header BLOB NOT NULL,
  status TEXT NOT NULL,            -- pending | attested | orphaned | reorged (attested, then rolled back)
                                   -- | cosigned (quorum: signed here; relayed by whoever holds t signatures)
  tx_hash TEXT,
  gas_used INTEGER,
  accepted_at REAL NOT NULL,
  verify_seconds REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_status ON blocks(status, height);
-- What each attested block's child names as parent (paper rules: its own hash).
CREATE TABLE IF NOT EXISTS links (
  link BLOB PRIMARY KEY,
  hash BLOB NOT NULL
);
-- Chain-bound: each accepted block's segment and where its replay starts, so W and W' can be rebuilt.
CREATE TABLE IF NOT EXISTS segments (
  hash BLOB PRIMARY KEY,
  parent_block BLOB NOT NULL,      -- the parent's block hash (the header names its link)
  segment BLOB NOT NULL,           -- pol_core.segment encoding
  w BLOB NOT NULL,                 -- hash of W = replay(parent's W', segment)
  w_new BLOB NOT NULL              -- hash of W'
);
CREATE INDEX IF NOT EXISTS segments_w ON segments(w);
-- The models (W and W') each block names, so GetModel's canonical check is an index look-up.
CREATE TABLE IF NOT EXISTS block_models (
  model BLOB NOT NULL,
  hash BLOB NOT NULL,
  PRIMARY KEY (model, hash)
);
CREATE INDEX IF NOT EXISTS segments_w_new ON segments(w_new);
-- Quorum mode: every member's signature this verifier has seen (its own included), one row per
-- (signer, height, redraw, header). Two rows of one signer at one (height, redraw) are equivocation.
CREATE TABLE IF NOT EXISTS signatures (
  signer BLOB NOT NULL,
  height INTEGER NOT NULL,
  redraw INTEGER NOT NULL,
  hash BLOB NOT NULL,              -- the header's block hash
  header BLOB NOT NULL,            -- pol_core.header encoding
  signature BLOB NOT NULL,         -- 64-byte compact EIP-712 signature over Block(hash)
  seen_at REAL NOT NULL,
  PRIMARY KEY (signer, height, redraw, hash)
);
CREATE INDEX IF NOT EXISTS signatures_hash ON signatures(hash);
"""


@dataclass(frozen=True)
class SignatureRow:
    signer: bytes
    header: Header
    block_hash: bytes
    signature: bytes


@dataclass(frozen=True)
class JournalEntry:
    block_hash: bytes
    header: Header
    status: str
    tx_hash: str | None
    gas_used: int | None
    accepted_at: float


@dataclass(frozen=True)
class SegmentEntry:
    block_hash: bytes
    parent_block: bytes
    segment: bytes
    weights_hash: bytes
    new_weights_hash: bytes


class Journal:
    """Every accepted block is written here, with status 'pending', before its transaction is sent."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._index_models()

    def _index_models(self) -> None:
        """Blocks journaled before block_models existed get their rows now (once: O(blocks) at open)."""
        rows = self._db.execute("SELECT hash, header FROM blocks WHERE hash NOT IN (SELECT hash FROM block_models)").fetchall()
        for block_hash, blob in rows:
            self._index_block_models(block_hash, decode_header(bytes(blob)))

    def _index_block_models(self, block_hash: bytes, header: Header) -> None:
        """GetModel's canonical check finds a block by its W or W' through this index."""
        self._db.executemany("INSERT OR IGNORE INTO block_models VALUES (?,?)",
                             [(header.weights_hash, block_hash), (header.new_weights_hash, block_hash)])

    def record_pending(self, block_hash: bytes, proof_id: bytes, header: Header, verify_seconds: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO blocks VALUES (?,?,?,?,?,'pending',NULL,NULL,?,?)",
                (block_hash, header.height, header.parent, proof_id, compute_header_encoding(header), time.time(),
                 verify_seconds),
            )
            self._index_block_models(block_hash, header)

    def is_canonical_model(self, model_hash: bytes) -> bool:
        """Whether `model_hash` is W or W' of a block that is attested or pending (an index look-up)."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM block_models m JOIN blocks b ON b.hash = m.hash "
                "WHERE m.model=? AND b.status IN ('attested', 'pending') LIMIT 1", (model_hash,)).fetchone()
        return row is not None

    def record_cosigned(self, block_hash: bytes, proof_id: bytes, header: Header, verify_seconds: float) -> None:
        """Quorum mode: a block this verifier signed; it becomes pending only here with t signatures, and
        attested through the chain's events whoever relays it."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO blocks VALUES (?,?,?,?,?,'cosigned',NULL,NULL,?,?)",
                (block_hash, header.height, header.parent, proof_id, compute_header_encoding(header), time.time(),
                 verify_seconds),
            )
            self._index_block_models(block_hash, header)

    def record_caught_up(self, block_hash: bytes, header: Header, tx_hash: str, link: bytes) -> None:
        """Quorum mode: a block on chain that others assembled, fetched from a peer (catch-up)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO blocks VALUES (?,?,?,?,?,'attested',?,NULL,?,0)",
                (block_hash, header.height, header.parent, b"catch-up" + block_hash, compute_header_encoding(header),
                 tx_hash, time.time()),
            )
            self._index_block_models(block_hash, header)
        self.mark_attested(block_hash, tx_hash, None, link)

    def promote_pending(self, block_hash: bytes) -> None:
        """A co-signed block with t signatures: this verifier relays it."""
        with self._lock:
            self._db.execute("UPDATE blocks SET status='pending' WHERE hash=? AND status='cosigned'", (block_hash,))

    def has_accepted_proof(self, proof_id: bytes) -> bool:
        """A proof whose block is pending or on chain (a co-signed one may still be assembled here)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM blocks WHERE proof_id=? AND status IN ('pending','attested')",
                                    (proof_id,)).fetchone() is not None

    # ── signatures (quorum mode) ──

    def claim_signature(self, signer: bytes, header: Header, block_hash: bytes, signature: bytes) -> bytes | None:
        """Record `signer`'s own signature over `header` unless it signed another header at the same
        (height, redraw): then nothing is written and that header's hash is returned. Durable (FULL
        sync) before it returns, so no signature leaves the process unrecorded."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT hash FROM signatures WHERE signer=? AND height=? AND redraw=? AND hash<>?",
                                       (signer, header.height, header.redraw, block_hash)).fetchone()
                if row is None:
                    self._insert_signature(signer, header, block_hash, signature)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return None if row is None else bytes(row[0])

    def record_signature(self, signer: bytes, header: Header, block_hash: bytes, signature: bytes) -> bool:
        """Record a signature seen (any member's); True when it is new."""
        with self._lock:
            return self._insert_signature(signer, header, block_hash, signature)

    def _insert_signature(self, signer: bytes, header: Header, block_hash: bytes, signature: bytes) -> bool:
        cur = self._db.execute("INSERT OR IGNORE INTO signatures VALUES (?,?,?,?,?,?,?)",
                               (signer, header.height, header.redraw, block_hash, compute_header_encoding(header),
                                signature, time.time()))
        return cur.rowcount == 1

    def _signature_rows(self, where: str, args: tuple[object, ...]) -> list[SignatureRow]:
        with self._lock:
            rows = self._db.execute(f"SELECT signer, header, hash, signature FROM signatures WHERE {where}",
                                    args).fetchall()
        return [SignatureRow(bytes(r[0]), decode_header(bytes(r[1])), bytes(r[2]), bytes(r[3])) for r in rows]

    def signatures_at(self, height: int, redraw: int, signer: bytes | None = None) -> list[SignatureRow]:
        if signer is None:
            return self._signature_rows("height=? AND redraw=? ORDER BY signer, seen_at", (height, redraw))
        return self._signature_rows("height=? AND redraw=? AND signer=? ORDER BY seen_at", (height, redraw, signer))

    def signatures_for(self, block_hash: bytes) -> list[SignatureRow]:
        return self._signature_rows("hash=? ORDER BY signer", (block_hash,))

    def equivocations(self) -> list[tuple[SignatureRow, SignatureRow]]:
        """Pairs of one signer's signatures over two headers at one (height, redraw): the first two seen."""
        with self._lock:
            keys = self._db.execute("SELECT signer, height, redraw FROM signatures GROUP BY signer, height, redraw "
                                    "HAVING COUNT(*) > 1 ORDER BY height, redraw, signer").fetchall()
        out = []
        for signer, height, redraw in keys:
            rows = self._signature_rows("signer=? AND height=? AND redraw=? ORDER BY seen_at LIMIT 2",
                                        (signer, height, redraw))
            out.append((rows[0], rows[1]))
        return out

    def mark_attested(self, block_hash: bytes, tx_hash: str, gas_used: int | None, link: bytes) -> None:
        with self._lock:
            self._db.execute("UPDATE blocks SET status='attested', tx_hash=?, gas_used=? WHERE hash=?",
                             (tx_hash, gas_used, block_hash))
            # A block attested again after a rollback gets a new link under chain-bound rules (it mixes in
            # the new inclusion's prevrandao): only the link now on chain names it.
            self._db.execute("DELETE FROM links WHERE hash=?", (block_hash,))
            self._db.execute("INSERT OR REPLACE INTO links VALUES (?,?)", (link, block_hash))

    def get_by_link(self, link: bytes) -> JournalEntry | None:
        """The attested block whose link is `link` (what its child names as parent)."""
        with self._lock:
            row = self._db.execute("SELECT hash FROM links WHERE link=?", (link,)).fetchone()
        return None if row is None else self.get(bytes(row[0]))

    def get_link(self, block_hash: bytes) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT link FROM links WHERE hash=?", (block_hash,)).fetchone()
        return None if row is None else bytes(row[0])

    def record_segment(self, block_hash: bytes, parent_block: bytes, segment: bytes, w: bytes, w_new: bytes) -> None:
        """Before record_pending: a block is never pending without the segment that rebuilds its W."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO segments VALUES (?,?,?,?,?)",
                             (block_hash, parent_block, segment, w, w_new))

    def get_segment(self, block_hash: bytes) -> SegmentEntry | None:
        with self._lock:
            row = self._db.execute("SELECT hash, parent_block, segment, w, w_new FROM segments WHERE hash=?",
                                   (block_hash,)).fetchone()
        return None if row is None else SegmentEntry(*(bytes(v) for v in row))

    def find_segment_by_model(self, weights_hash: bytes) -> tuple[SegmentEntry, bool] | None:
        """The block whose W (False) or W' (True) is `weights_hash`."""
        with self._lock:
            row = self._db.execute(
                "SELECT hash, parent_block, segment, w, w_new, w_new=? FROM segments WHERE w_new=? OR w=? LIMIT 1",
                (weights_hash, weights_hash, weights_hash)).fetchone()
        return None if row is None else (SegmentEntry(*(bytes(v) for v in row[:5])), bool(row[5]))

    def mark_orphaned(self, block_hash: bytes) -> None:
        with self._lock:
            self._db.execute("UPDATE blocks SET status='orphaned' WHERE hash=?", (block_hash,))

    def mark_reorged(self, block_hash: bytes) -> None:
        with self._lock:
            self._db.execute("UPDATE blocks SET status='reorged' WHERE hash=?", (block_hash,))
            self._db.execute("DELETE FROM links WHERE hash=?", (block_hash,))  # no child may name it now

    def mark_pending(self, block_hash: bytes) -> None:
        """Send a rolled-back or orphaned block again: its parent is the chain's tip once more."""
        with self._lock:
            self._db.execute("UPDATE blocks SET status='pending', tx_hash=NULL, gas_used=NULL WHERE hash=?",
                             (block_hash,))

    def with_status(self, *statuses: str) -> list[JournalEntry]:
        marks = ",".join("?" * len(statuses))
        return self._rows(f"status IN ({marks}) ORDER BY height, accepted_at", statuses)

    def oldest_pending_at(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(accepted_at) FROM blocks WHERE status='pending'").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def probe_writable(self) -> None:
        """Raise (sqlite3.Error) unless the journal can take a write now."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("ROLLBACK")

    def _rows(self, where: str, args: tuple[object, ...]) -> list[JournalEntry]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT hash, header, status, tx_hash, gas_used, accepted_at FROM blocks WHERE {where}", args
            ).fetchall()
        return [JournalEntry(bytes(r[0]), decode_header(bytes(r[1])), r[2], r[3], r[4], r[5]) for r in rows]

    def pending(self) -> list[JournalEntry]:
        return self._rows("status='pending' ORDER BY height", ())

    def get(self, block_hash: bytes) -> JournalEntry | None:
        rows = self._rows("hash=?", (block_hash,))
        return rows[0] if rows else None

    def get_by_height(self, height: int) -> JournalEntry | None:
        # The canonical block of a height (or the one waiting for its receipt), never a rolled-back one.
        rows = self._rows("height=? AND status IN ('attested','pending') ORDER BY status='attested' DESC", (height,))
        return rows[0] if rows else None

    def has_proof(self, proof_id: bytes) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM blocks WHERE proof_id=?", (proof_id,)).fetchone() is not None

    def close(self) -> None:
        self._db.close()


class ModelStore:
    """models/<weights hash>.safetensors, written atomically; the file name is the content's hash."""

    def __init__(self, root: str | Path, create: bool = True):
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)

    def path(self, weights_hash: bytes) -> Path:
        return self.root / f"{weights_hash.hex()}.safetensors"

    def has(self, weights_hash: bytes) -> bool:
        return self.path(weights_hash).exists()

    def put(self, state: Mapping[str, torch.Tensor], weights_hash: bytes | None = None) -> bytes:
        h = weights_hash or compute_weights_hash(state)
        target = self.path(h)
        if target.exists():
            return h
        tmp = target.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        try:
            with open(tmp, "wb") as f:
                f.write(encode_state(state))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk must not leave half a model behind
            raise
        return h

    def get_bytes(self, weights_hash: bytes) -> bytes | None:
        p = self.path(weights_hash)
        return p.read_bytes() if p.exists() else None

    def get_state(self, weights_hash: bytes, order: list[str]) -> dict[str, torch.Tensor] | None:
        blob = self.get_bytes(weights_hash)
        return None if blob is None else decode_state(blob, order)
