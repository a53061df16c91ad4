"""The C-STORE benchmark's printed report: a table per set and association count, the ratios
against the targets, the failures, and a summary table in the README's shape.

Rates are net of the senders' start cost (the raw ones beside them); MB = 10^6 bytes of
the files sent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.interop.store_data import SMALL

if TYPE_CHECKING:
    from bench.store import Cell

MB = 1_000_000
OURS_OURS, DCMTK_OURS, OURS_DCMTK = "ours -> ours", "DCMTK -> ours", "ours -> DCMTK"
DCMTK_DCMTK, PYNETDICOM_PYNETDICOM = "DCMTK -> DCMTK", "pynetdicom -> pynetdicom"
DCMTK_FLOOR = "DCMTK -> Python floor"


@dataclass(frozen=True)
class Ratio:
    """`pair` / `reference` on the same set, with its target (None: shown, no target)."""

    pair: str
    reference: str
    target: float | None
    meaning: str


RATIOS = (
    Ratio(OURS_OURS, DCMTK_DCMTK, 1.0, "ours end to end vs the reference"),
    Ratio(DCMTK_OURS, DCMTK_DCMTK, 0.9, "our receiver vs DCMTK's, same sender"),
    Ratio(OURS_DCMTK, DCMTK_DCMTK, None, "our sender vs DCMTK's, same receiver"),
    Ratio(OURS_OURS, PYNETDICOM_PYNETDICOM, None, "ours vs pynetdicom end to end"),
    Ratio(DCMTK_FLOOR, DCMTK_DCMTK, None, "a Python receiver without layers vs DCMTK's (--floor)"),
    Ratio(DCMTK_OURS, DCMTK_FLOOR, None, "our receiver vs the same without its layers (--floor)"),
)
HEADER = (f"{'pair':<26}{'inst/s':>9}{'MB/s':>8}{'raw inst/s':>12}{'raw MB/s':>10}{'wall s':>9}{'start s':>9}"
          f"{'rcv CPU s':>11}{'rcv RSS MB':>12}   runs: net inst/s")


def _num(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _rates(cell: Cell, seconds: float) -> tuple[float, float]:
    if math.isnan(seconds):
        return float("nan"), float("nan")
    count, size = cell.rates(seconds)
    return count, size / MB


def _row(cell: Cell) -> str:
    count, mb = _rates(cell, cell.net)
    raw_count, raw_mb = _rates(cell, cell.wall)
    cpu = cell.median(lambda run: run.receiver.cpu_seconds)
    rss = cell.median(lambda run: run.receiver.peak_rss) / MB
    runs = ", ".join(_num(cell.instances.count / run.net if run.net > 0 else float("nan")) for run in cell.runs)
    start = cell.median(lambda run: run.start_cost)
    return (f"{cell.pair.label:<26}{_num(count):>9}{_num(mb, 1):>8}{_num(raw_count):>12}{_num(raw_mb, 1):>10}"
            f"{_num(cell.wall, 2):>9}{_num(start, 2):>9}{_num(cpu, 2):>11}{_num(rss, 0):>12}   [{runs}]")


def _ratio_lines(cells: dict[str, Cell]) -> list[str]:
    lines = []
    for ratio in RATIOS:
        pair, reference = cells.get(ratio.pair), cells.get(ratio.reference)
        if pair is None or reference is None:
            continue
        net, raw = reference.net / pair.net, reference.wall / pair.wall
        verdict = "" if ratio.target is None else (
            f"target >= {ratio.target:g}: " + ("n/a" if math.isnan(net) else "met" if net >= ratio.target else "MISSED"))
        lines.append(f"  {ratio.pair + ' / ' + ratio.reference:<42}{_num(net, 2):>6} (raw {_num(raw, 2):>5})  "
                     f"{verdict:<22}{ratio.meaning}")
    return lines


def _describe(cell: Cell) -> str:
    instances = cell.instances
    each = instances.total_bytes / instances.count
    size = f"{each / 1000:,.1f} KB" if each < MB else f"{each / MB:,.1f} MB"
    plural = "s" if cell.associations > 1 else ""
    return (f"{instances.kind}: {instances.count:,} instances x {size} ({instances.total_bytes / MB:,.1f} MB), "
            f"{cell.associations} association{plural}" + (" (one sender process each)" if plural else ""))


def _groups(cells: Sequence[Cell]) -> dict[tuple[str, int], dict[str, Cell]]:
    groups: dict[tuple[str, int], dict[str, Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.instances.kind, cell.associations), {})[cell.pair.label] = cell
    return groups


def summary(cells: Sequence[Cell]) -> list[str]:
    """One row per pair: small instances in instances/s, the others in MB/s (net), per association count."""
    groups = _groups(cells)
    unit = {kind: "inst/s" if kind == SMALL else "MB/s" for kind, _ in groups}
    lines = ["summary, net of start cost:", "| sender -> receiver | " + " | ".join(f"{kind} {unit[kind]}, {n} assoc" for kind, n in groups) + " |",
             "|---" * (len(groups) + 1) + "|"]
    for label in dict.fromkeys(cell.pair.label for cell in cells):
        figures = []
        for (kind, _), group in groups.items():
            count, mb = _rates(group[label], group[label].net) if label in group else (float("nan"), float("nan"))
            figures.append(_num(count if unit[kind] == "inst/s" else mb))
        lines.append(f"| {label} | " + " | ".join(figures) + " |")
    return lines


def preamble(runs: int) -> str:
    return (f"C-STORE benchmark: median of {runs} interleaved run(s); rates net of the senders' start cost "
            "(raw: with it); MB = 10^6 bytes of files sent")


def group_report(group: Sequence[Cell]) -> list[str]:
    """The table of one set and association count, its ratios and its failures."""
    by_label = {cell.pair.label: cell for cell in group}
    lines = [_describe(group[0]), HEADER, "-" * len(HEADER)]
    lines += [_row(cell) for cell in group]
    lines += _ratio_lines(by_label)
    for cell in group:
        between = "" if cell.pair.involves_ours else " (between two peers: theirs, not fatal)"
        lines += [f"  FAILED {cell.pair.label}{between}: {failure}"[:1500] for failure in cell.failures]
    return lines


def report(cells: Sequence[Cell], runs: int) -> str:
    lines = [preamble(runs)]
    for group in _groups(cells).values():
        lines += ["", *group_report(list(group.values()))]
    lines += ["", *summary(cells)]
    return "\n".join(lines)
