"""The demo's results: one CSV row per block and a figure in the style of the paper's Figure 1."""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class BlockRow:
    height: int
    block_hash: str
    miner: str
    interval_s: float
    correct_before: int
    correct_after: int
    accuracy_after: float
    difficulty: int
    gas_used: int
    tx_hash: str


def write_csv(rows: list[BlockRow], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[fl.name for fl in fields(BlockRow)])
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def write_figure(rows: list[BlockRow], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [r.height for r in rows]
    fig, ax_int = plt.subplots(figsize=(8, 4.5), dpi=120)
    ax_int.bar(heights, [r.interval_s for r in rows], color="#9ecae1", label="block interval (s)")
    ax_int.set_xlabel("block height")
    ax_int.set_ylabel("block interval (s)")
    ax_acc = ax_int.twinx()
    ax_acc.plot(heights, [100 * r.accuracy_after for r in rows], color="#d62728", marker="o", ms=3,
                label="test accuracy (%)")
    ax_acc.set_ylabel("test accuracy of W' (%)")
    ax_acc.set_ylim(0, 100)
    lines = ax_int.get_legend_handles_labels()[0] + ax_acc.get_legend_handles_labels()[0]
    ax_int.legend(lines, [str(ln.get_label()) for ln in lines], loc="lower right")
    ax_int.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
