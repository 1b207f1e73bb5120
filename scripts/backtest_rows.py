"""Print the README's backtest table rows from `forewarn backtest --json` files.

Usage: .venv/bin/python scripts/backtest_rows.py LABEL=FILE.json [LABEL=FILE.json ...]
(docs/backtest.md, "Reproduce", makes the two files the README shows.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _num(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _lead(minutes: Any) -> str:
    if minutes is None:
        return "-"
    return f"{minutes / 1440:g} days" if minutes >= 1440 else f"{minutes:.0f} min"


def _with(x: dict[str, Any], key: str, digits: int, show: Any = None) -> str:
    show = show or (lambda v: _num(v, digits))
    low, high = x.get(f"{key}_ci") or (None, None)
    return f"{show(x.get(key))} [{show(low)}-{show(high)}]"


def rows(label: str, result: dict[str, Any]) -> list[str]:
    horizon = result["horizon_minutes"]
    span = f"{horizon / 1440:g} days" if horizon >= 1440 else f"{horizon / 60:g} hour"
    out = []
    for i, name in enumerate(("model", "static", "logistic")):
        x, matched = result[name], result[name]["matched"]
        rules = result["details"].get("static_rules") or []
        scorer = name
        if name == "static" and rules:
            scorer = "static (" + ", ".join(f"`{r['column']} {r['direction']} {r['limit']:g}`" for r in rules) + ")"
        cells = [
            f"{label}, {result['events_eval']} failures evaluated" if i == 0 else "",
            span if i == 0 else "",
            scorer,
            _with(x, "pr_auc", 3),
            _with(x, "roc_auc", 3),
            _with(x, "event_recall", 2),
            _with(x, "alert_precision", 3),
            _with(x, "median_lead_minutes", 0, _lead),
            _with(matched, "event_recall", 2),
            _with(matched, "alert_precision", 2),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def ratios(label: str, result: dict[str, Any]) -> str:
    parts = []
    for base in ("static", "logistic"):
        r = result["model"].get(f"ratio_to_{base}") or {}
        low, high = r.get("ci") or (None, None)
        parts.append(f"over {base} {_num(r.get('pr_auc'), 2)} [{_num(low, 2)}-{_num(high, 2)}]")
    budget = f"{result['alert_budget']:.1%}"
    return f"{label}: model's PR-AUC " + ", ".join(parts) + f"; champion {result['champion']}; matched budget {budget}"


def main(argv: list[str]) -> None:
    pairs = [a.split("=", 1) for a in argv]
    print("| data | horizon | scorer | PR-AUC | ROC-AUC | event recall | alert precision | median lead "
          "| matched recall | matched precision |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    loaded = [(label, json.loads(Path(path).read_text(encoding="utf-8"))) for label, path in pairs]
    for label, result in loaded:
        print("\n".join(rows(label, result)))
    print()
    for label, result in loaded:
        print(f"- {ratios(label, result)}")


if __name__ == "__main__":
    main(sys.argv[1:])
