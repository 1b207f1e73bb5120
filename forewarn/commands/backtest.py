"""`forewarn backtest`: (being built). Registered in forewarn.cli as a single command, `command` below."""

from __future__ import annotations

from forewarn.commands.common import console, friendly


@friendly
def command() -> None:
    """(being built)"""
    console.print("backtest is being built")
