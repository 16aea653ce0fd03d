"""GetModel's canonical check is an index look-up (block_models), with the journal-scan's meaning:
W and W' of attested or pending blocks only, also for a journal written before the index existed."""
from __future__ import annotations

import sqlite3
from dataclasses import replace

from pol_core.header import compute_genesis_header
from verifier_service.journal import Journal

W, W_NEW, OTHER = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


def header():
    g = compute_genesis_header(b"\x00" * 32, b"\x09" * 32, 10, 2)
    return replace(g, height=1, weights_hash=W, new_weights_hash=W_NEW)


def test_models_of_pending_and_attested_blocks_only(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    j.record_pending(b"\xaa" * 32, b"\xbb" * 32, header(), 0.1)
    assert j.is_canonical_model(W) and j.is_canonical_model(W_NEW) and not j.is_canonical_model(OTHER)
    j.mark_attested(b"\xaa" * 32, "0x1", 1, b"\xaa" * 32)
    assert j.is_canonical_model(W_NEW)
    j.mark_reorged(b"\xaa" * 32)  # rolled back: its models are no longer served
    assert not j.is_canonical_model(W) and not j.is_canonical_model(W_NEW)
    j.mark_pending(b"\xaa" * 32)  # sent again
    assert j.is_canonical_model(W_NEW)
    j.close()


def test_a_journal_from_before_the_index_is_indexed_at_open(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    j.record_pending(b"\xaa" * 32, b"\xbb" * 32, header(), 0.1)
    j.close()
    db = sqlite3.connect(str(tmp_path / "j.sqlite"))
    db.execute("DROP TABLE block_models")  # the schema before this change
    db.commit()
    db.close()
    j = Journal(tmp_path / "j.sqlite")
    assert j.is_canonical_model(W) and j.is_canonical_model(W_NEW)
    j.close()
