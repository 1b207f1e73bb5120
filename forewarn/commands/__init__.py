"""Sub-commands of the ``forewarn`` CLI, one Typer app per module, registered in :mod:`forewarn.cli`.

Each module keeps its imports of heavy libraries inside the command bodies, so ``forewarn --help`` stays fast.
"""
