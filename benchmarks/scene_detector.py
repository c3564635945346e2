"""Issue 30's seventh attempt: does a per-file statistic tell "only voice and steady noise" from "something besides"?

Reads the statistics :func:`hybrid_rules.scene_statistics` stored beside each rule's row by a ``hybrid_rules.py``
run over the same items (run that first, with ``--rules scene_blend``), prints each group's distribution and, per statistic,
the threshold that best separates groups a and b ("only voice + noise") from c and d ("something else") on the
tuning half, with its errors on both halves.

    python benchmarks/scene_detector.py --quick
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import common
import hybrid_rules
import quality

STATISTICS = ("scene_kept", "scene_kept_p90", "scene_partials", "scene_classic_db", "scene_lsnr")
ONLY_VOICE, SOMETHING_ELSE = "ab", "cd"


def item_statistics(quick: bool, cache: Path, rule: str) -> list[dict[str, object]]:
    """One row per mono item of both halves: its group, half, name, noise and scene statistics (from ``rule``'s cached
    rows only)."""
    cases = [case for case in quality.all_cases("abcde", quick=quick, halves=quality.HALVES) if case.kind != "stereo"]
    items = []
    for case in cases:
        rows = hybrid_rules.run_item(case, (rule,), cache, cached_only=True)
        row = next((row for row in rows if row["method"] == f"rule:{rule}"), None)
        if row is not None and all(name in row for name in STATISTICS):
            items.append({"group": case.group, "half": case.half, "case": case.name, "noise": case.noise_label,
                          **{name: float(row[name]) for name in STATISTICS}})
    return items


def errors(items: list[dict[str, object]], statistic: str, threshold: float, sign: float) -> tuple[int, int, int, int]:
    """Items of a, b called "something else" and of c, d called "only voice" (of how many each)."""
    only = [sign * item[statistic] < sign * threshold for item in items]
    false_else = sum(not o for o, item in zip(only, items) if item["group"] in ONLY_VOICE)
    missed = sum(o for o, item in zip(only, items) if item["group"] in SOMETHING_ELSE)
    return (false_else, sum(item["group"] in ONLY_VOICE for item in items), missed,
            sum(item["group"] in SOMETHING_ELSE for item in items))


def best_threshold(items: list[dict[str, object]], statistic: str) -> tuple[float, float]:
    """The threshold and direction (+1: "only voice" below it) with the fewest errors, misses of c, d counting double
    (a missed bed costs more than a missed blend), at midpoints between the items' values; the first of equals wins."""
    values = np.sort(np.unique([item[statistic] for item in items]))
    candidates = np.concatenate([[values[0] - 1], (values[1:] + values[:-1]) / 2, [values[-1] + 1]])
    best = None
    for sign in (1.0, -1.0):
        for threshold in candidates:
            false_else, _, missed, _ = errors(items, statistic, threshold, sign)
            cost = false_else + 2 * missed
            if best is None or cost < best[0]:
                best = (cost, threshold, sign)
    return best[1], best[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="quality.py's --quick subset")
    parser.add_argument("--cache", type=Path, default=common.OUT_DIR / "cache")
    parser.add_argument("--rule", default="scene_blend", help="the rule whose rows hold the statistics")
    args = parser.parse_args(argv)
    common.require_media()
    items = item_statistics(args.quick, args.cache, args.rule)
    if not items:
        print("no scored items: run hybrid_rules.py over the same items first", file=sys.stderr)
        return 1
    print("| group | half | n | " + " | ".join(f"{s} min / median / max" for s in STATISTICS) + " |")
    print("|---" * (3 + len(STATISTICS)) + "|")
    for group in "abcde":
        for half in quality.HALVES:
            mine = [item for item in items if item["group"] == group and item["half"] == half]
            if mine:
                cells = [" / ".join(f"{v:.3g}" for v in np.percentile([i[s] for i in mine], [0, 50, 100])) for s in STATISTICS]
                print(f"| {group} | {half} | {len(mine)} | " + " | ".join(cells) + " |")
    print("\n| statistic | \"only voice\" when | a, b called else (tune / held) | c, d missed (tune / held) | e called only voice |")
    print("|---|---|---|---|---|")
    for statistic in STATISTICS:
        tune = [item for item in items if item["half"] == "tune"]
        threshold, sign = best_threshold([i for i in tune if i["group"] in ONLY_VOICE + SOMETHING_ELSE], statistic)
        cells = []
        for half in quality.HALVES:
            fe, n_ab, missed, n_cd = errors([i for i in items if i["half"] == half], statistic, threshold, sign)
            cells.append((f"{fe}/{n_ab}", f"{missed}/{n_cd}"))
        in_e = [i for i in items if i["group"] == "e"]
        e_only = sum(sign * i[statistic] < sign * threshold for i in in_e)
        print(f"| {statistic} | {'<' if sign > 0 else '>'} {threshold:.4g} | {cells[0][0]} / {cells[1][0]} | "
              f"{cells[0][1]} / {cells[1][1]} | {e_only}/{len(in_e)} |")
    print("\nper item (half, group, noise, case, then the statistics above):")
    for item in sorted(items, key=lambda i: (i["half"], i["group"], i["scene_kept"])):
        print(f"{item['half']} {item['group']} {item['noise']:>18} {item['case'][:40]:40} "
              + " ".join(f"{item[s]:8.3f}" for s in STATISTICS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
