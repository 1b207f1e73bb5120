"""Carrying plans out safely: the write-ahead journal, action classes, the applier, and failure restore.

Terms:
    intent / outcome: journal entries written just before and just after an action touches the cloud.
    interrupted action: one with an intent and no outcome (the process died in between).
    revert: undoing one action; restore: returning the fleet to the plan's snapshot when a revert fails.
"""
