"""The applier: runs an approved plan through a cloud adapter so that no work is lost, done twice or stranded.

For a plan: snapshot the fleet (journalled), then for each action write its intent, check its
pre-condition, execute it (transient errors retried with backoff, behind the adapter breaker), wait the
bake time, check its post-condition and write its outcome. When an action or a post-condition fails, the
actions that took effect are reverted in reverse order; if a revert fails the snapshot is restored; the
plan ends ROLLED_BACK, or FAILED with the reason when even the restore fails.

Dry-run is enforced here and only here (:meth:`Applier._mutate`, :meth:`Applier._change`): nothing reaches
a mutating adapter call, and every action is marked SKIPPED with the note ``dry-run``.

Each change an action makes (execute, revert) goes through the injected :class:`ActionRunner` when one is
given (an orchestrator's task with retries), else straight to the adapter with tenacity retries.

``recover()`` (or ``resume(plan_id)`` for one plan) finishes what a crash interrupted: an action with an
intent but no outcome is inspected (pre- and post-condition) and recorded if it took effect, completed with
the same idempotency key if it did not, and a rollback in progress is carried on. No action runs twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import tenacity

from forewarn.cloud import CloudAdapter
from forewarn.errors import AdapterError, PlanError
from forewarn.execution.actions import LATEST, ActionHandler, handler_for
from forewarn.execution.journal import Journal
from forewarn.execution.resilience import AdapterBreaker, default_retry
from forewarn.execution.runner import ActionRunner
from forewarn.execution.undo import undo_of
from forewarn.schemas import Action, ActionState, ActionType, Plan, PlanState, utcnow
from forewarn.store.lease import LeaseHeld, LeaseStore

log = logging.getLogger(__name__)
T = TypeVar("T")
Hook = Callable[[str, "str | None"], None]
A = ActionState
DRY_RUN_NOTE = "dry-run"
CRASH_POINTS = (
    "after-start",
    "after-snapshot",
    "before-intent",
    "after-intent",
    "after-execute",
    "after-outcome",
    "before-revert",
    "after-revert",
    "before-finish",
)
"""Where ``hook`` is called; tests raise there to simulate a crash."""


class Applier:
    """Runs approved plans.

    Args:
        adapter: the cloud.
        journal: where plans and their actions are recorded.
        dry_run: record what would be done and change nothing (the default).
        retry: a tenacity policy for transient adapter errors (default: 4 attempts, backoff with jitter).
        breaker: the adapter breaker (default: a new one).
        bake_seconds: how long to wait after an action before checking its post-condition.
        sleep: the clock used for the bake time.
        hook: called as ``hook(point, action_id)`` at each of :data:`CRASH_POINTS`.
        runner: runs each action's execute and revert (and owns their retries); default: direct calls.
        clock: the time outcomes are recorded at (the cycle's clock; a success is the guardrails' charge).
    """

    def __init__(
        self,
        adapter: CloudAdapter,
        journal: Journal,
        *,
        dry_run: bool = True,
        retry: tenacity.Retrying | None = None,
        breaker: AdapterBreaker | None = None,
        bake_seconds: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        hook: Hook | None = None,
        runner: ActionRunner | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.adapter = adapter
        self.journal = journal
        self.dry_run = dry_run
        self.retry = retry or default_retry()
        self.breaker = breaker or AdapterBreaker()
        self.bake_seconds = bake_seconds
        self.sleep = sleep
        self.hook = hook or (lambda point, action_id: None)
        self.runner = runner
        self.clock = clock
        self.leases = LeaseStore(journal.repo.engine)

    # -- entry points --------------------------------------------------------------------------------------
    def run(self, plan: Plan) -> Plan:
        """Run an APPROVED plan (saving it first if the journal does not have it); returns it as it ended."""
        if not self.journal.exists(plan.plan_id):
            self.journal.save_plan(plan)
        plan = self.journal.get(plan.plan_id)
        if plan.state != PlanState.APPROVED:
            raise PlanError(f"plan {plan.plan_id} is {plan.state}; only an APPROVED plan runs (approve it first)")
        for action in plan.actions:
            handler_for(action).validate(action)
        with self.leases.running_plan(plan.plan_id):  # from before RUNNING: no other process "recovers" it
            self.journal.transition(plan.plan_id, PlanState.RUNNING, note=DRY_RUN_NOTE if self.dry_run else None)
            self.hook("after-start", None)
            if self.dry_run:
                return self._dry_run(plan.plan_id)
            if not self._snapshot(plan.plan_id):
                return self.journal.get(plan.plan_id)
            return self._resume(plan.plan_id)

    def recover(self) -> list[Plan]:
        """Finish every plan a crash left RUNNING; returns them as they ended. A plan another live process is
        running (it holds the plan's lease) is left to it."""
        done = []
        for plan in self.journal.list(PlanState.RUNNING):
            if DRY_RUN_NOTE not in plan.notes and self.dry_run:
                log.warning("plan %s was interrupted; a dry-run applier leaves it to a live one", plan.plan_id)
                continue
            try:
                with self.leases.running_plan(plan.plan_id):
                    if self.journal.get(plan.plan_id).state == PlanState.RUNNING:  # it may have ended meanwhile
                        done.append(self._resume_plan(plan.plan_id))
            except LeaseHeld as held:
                log.info("plan %s is running in another process (%s); left to it", plan.plan_id, held)
        return done

    def resume(self, plan_id: str) -> Plan:
        """Finish one RUNNING plan a crash interrupted (a live one needs a live applier); returns it as it ended.

        Raises:
            LeaseHeld: another live process is running the plan.
            PlanError: the plan is not RUNNING, or it acted and this applier is a dry run.
        """
        with self.leases.running_plan(plan_id):
            return self._resume_plan(plan_id)

    def _resume_plan(self, plan_id: str) -> Plan:
        plan = self.journal.get(plan_id)
        if plan.state != PlanState.RUNNING:
            raise PlanError(f"plan {plan_id} is {plan.state}; only a RUNNING plan is resumed")
        if DRY_RUN_NOTE in plan.notes:
            return self._dry_run(plan_id)
        if self.dry_run:
            raise PlanError(f"plan {plan_id} was interrupted while acting; only a live applier resumes it")
        if self.journal.is_rolling_back(plan_id):
            return self._rollback(plan_id, "resumed after a crash")
        if self._snapshot(plan_id):
            return self._resume(plan_id)
        return self.journal.get(plan_id)

    # -- the steps -----------------------------------------------------------------------------------------
    def _dry_run(self, plan_id: str) -> Plan:
        outcomes: list[tuple[str, ActionState, str | None]] = []
        for action in self.journal.get(plan_id).actions:
            if action.state != A.PENDING:
                continue
            try:
                would = "would run" if self._read(handler_for(action).pre_condition, action) else "would skip"
            except AdapterError as exc:
                would = f"cannot tell ({exc})"
            outcomes.append((action.action_id, A.SKIPPED, f"{DRY_RUN_NOTE}: {would}"))
        self.journal.record_outcomes(plan_id, outcomes)  # nothing acted: one transaction for the plan
        note = f"{DRY_RUN_NOTE}: nothing was sent to {self.adapter.name}"
        return self.journal.transition(plan_id, PlanState.SUCCEEDED, note=note)

    def _snapshot(self, plan_id: str) -> bool:
        """Take the plan's known-good snapshot once; on failure end the plan FAILED (nothing ran yet)."""
        if self.journal.snapshot_of(plan_id) is not None:
            return True
        try:
            snapshot_id = self._mutate(self.adapter.snapshot, key=f"{plan_id}:snapshot")
        except AdapterError as exc:
            self._skip_pending(plan_id, "not run: no snapshot")
            self.journal.transition(plan_id, PlanState.FAILED, note=f"could not take a snapshot first: {exc}")
            return False
        self.journal.record_snapshot(plan_id, snapshot_id, adapter=self.adapter.name)
        self.hook("after-snapshot", None)
        return True

    def _resume(self, plan_id: str) -> Plan:
        for action in self.journal.get(plan_id).actions:
            if action.state == A.RUNNING:
                failure = self._settle(plan_id, action)
            elif action.state == A.PENDING:
                failure = self._step(plan_id, action)
            else:
                continue
            if failure:
                return self._rollback(plan_id, failure)
        self.hook("before-finish", None)
        return self.journal.transition(plan_id, PlanState.SUCCEEDED)

    def _step(self, plan_id: str, action: Action) -> str | None:
        """Run one action; return why it failed, or None."""
        handler = handler_for(action)
        self.hook("before-intent", action.action_id)
        self.journal.record_intent(plan_id, action)
        self.hook("after-intent", action.action_id)
        resolved = self._resolve(plan_id, action)
        if resolved is None:
            self._outcome(plan_id, action, A.SKIPPED, "no earlier snapshot in the journal to roll back to")
            return None
        action = resolved
        try:
            if not self._read(handler.pre_condition, action):
                self._outcome(plan_id, action, A.SKIPPED, "pre-condition: target gone or already done")
                return None
        except AdapterError as exc:
            return self._failed(plan_id, action, f"pre-condition could not be checked: {exc}", applied=False)
        return self._execute(plan_id, action, handler)

    def _resolve(self, plan_id: str, action: Action) -> Action | None:
        """The action as the handler runs it: a restore-snapshot to ``latest`` names the newest snapshot an earlier plan
        took on this cloud (from the journal, kept with the action so a re-run restores the same one); None
        when there is no such snapshot."""
        if action.type is not ActionType.RESTORE_SNAPSHOT or action.params.get("snapshot", LATEST) != LATEST:
            return action
        snapshot = undo_of(action).get("snapshot")
        if snapshot is None:
            snapshot = self.journal.latest_snapshot(self.adapter.name, before=plan_id)
            if snapshot is None:
                return None
            self.journal.record_undo(plan_id, action.action_id, {"snapshot": snapshot})
        return action.model_copy(update={"params": {**action.params, "snapshot": snapshot}})

    def _settle(self, plan_id: str, action: Action) -> str | None:
        """Resolve an action interrupted between intent and outcome: record it if it took effect, else finish it."""
        handler = handler_for(action)
        action = self._resolve(plan_id, action) or action
        try:
            pending = self._read(handler.pre_condition, action)
        except AdapterError as exc:
            return self._failed(plan_id, action, f"recovery could not inspect it: {exc}", applied=True)
        if not pending:
            self.journal.add_note(plan_id, f"recovery: {action.action_id} had taken effect before the crash")
            return self._check(plan_id, action, handler)
        self.journal.add_note(plan_id, f"recovery: {action.action_id} had not taken effect; completing it")
        return self._execute(plan_id, action, handler)

    def _execute(self, plan_id: str, action: Action, handler: ActionHandler) -> str | None:
        try:
            undo = self._change(action, "execute", handler.execute)
        except AdapterError as exc:
            return self._failed(plan_id, action, str(exc), applied=self._took_effect(handler, action))
        if undo:
            self.journal.record_undo(plan_id, action.action_id, undo)
        self.hook("after-execute", action.action_id)
        return self._check(plan_id, action, handler)

    def _check(self, plan_id: str, action: Action, handler: ActionHandler) -> str | None:
        if self.bake_seconds > 0:
            self.sleep(self.bake_seconds)
        try:
            healthy, why = self._read(handler.post_condition, action), "it does not hold"
        except AdapterError as exc:
            healthy, why = False, f"it could not be checked: {exc}"
        if not healthy:
            return self._failed(plan_id, action, f"post-condition failed: {why}", applied=True)
        self._outcome(plan_id, action, A.SUCCEEDED)
        return None

    def _rollback(self, plan_id: str, reason: str) -> Plan:
        """Revert what took effect, newest first; restore the snapshot if a revert fails."""
        self.journal.begin_rollback(plan_id, reason)
        self._skip_pending(plan_id, "not run: plan rolled back")
        for action in reversed(self.journal.to_revert(plan_id)):
            self.hook("before-revert", action.action_id)
            self.journal.record_revert_intent(plan_id, action.action_id)
            try:
                reverted = self._change(action, "revert", handler_for(action).revert)
            except AdapterError as exc:
                return self._restore(plan_id, f"{reason}; revert of {action.action_id} failed: {exc}")
            if reverted:
                self.journal.record_outcome(plan_id, action.action_id, A.REVERTED, action.error)
            else:
                self.journal.add_note(
                    plan_id, f"{action.action_id} left in place: undoing it would return work to an unhealthy instance"
                )
            self.hook("after-revert", action.action_id)
        return self.journal.transition(plan_id, PlanState.ROLLED_BACK, note=f"rolled back: {reason}")

    def _restore(self, plan_id: str, reason: str) -> Plan:
        snapshot_id = self.journal.snapshot_of(plan_id)
        try:
            if snapshot_id is None:
                raise AdapterError("no snapshot was taken")
            self._mutate(self.adapter.restore, snapshot_id, key=f"{plan_id}:restore")
        except AdapterError as exc:
            note = f"FAILED: {reason}; restoring snapshot {snapshot_id} failed too: {exc}; the fleet needs an operator"
            return self.journal.transition(plan_id, PlanState.FAILED, note=note)
        for action in self.journal.to_revert(plan_id):
            self.journal.record_outcome(plan_id, action.action_id, A.REVERTED, f"restored from snapshot {snapshot_id}")
        note = f"rolled back: {reason}; restored snapshot {snapshot_id}"
        return self.journal.transition(plan_id, PlanState.ROLLED_BACK, note=note)

    # -- helpers -------------------------------------------------------------------------------------------
    def _outcome(self, plan_id: str, action: Action, state: ActionState, error: str | None = None) -> None:
        self.journal.record_outcome(plan_id, action.action_id, state, error, at=self.clock())
        self.hook("after-outcome", action.action_id)

    def _failed(self, plan_id: str, action: Action, why: str, *, applied: bool) -> str:
        self.journal.record_outcome(plan_id, action.action_id, A.FAILED, why, applied=applied)
        self.hook("after-outcome", action.action_id)
        return f"action {action.action_id} ({action.type}) failed: {why}"

    def _took_effect(self, handler: ActionHandler, action: Action) -> bool:
        """After a failed execute, ask the adapter whether the change happened anyway."""
        try:
            return not self._read(handler.pre_condition, action)
        except AdapterError:
            return False

    def _skip_pending(self, plan_id: str, why: str) -> None:
        pending = [a.action_id for a in self.journal.get(plan_id).actions if a.state == A.PENDING]
        self.journal.record_outcomes(plan_id, [(action_id, A.SKIPPED, why) for action_id in pending])

    def _read(self, fn: Callable[[CloudAdapter, Action], T], action: Action) -> T:
        return self._call(fn, self.adapter, action)

    def _mutate(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """The one door to the adapter's mutating calls: closed in dry-run."""
        if self.dry_run:
            raise PlanError("dry-run: the applier sends no change to the adapter")
        return self._call(fn, *args, **kwargs)

    def _change(self, action: Action, verb: str, fn: Callable[[CloudAdapter, Action], T]) -> T:
        """One action's execute or revert, through the runner when there is one: closed in dry-run too."""
        if self.runner is None:
            return self._mutate(fn, self.adapter, action)
        if self.dry_run:
            raise PlanError("dry-run: the applier sends no change to the adapter")
        return self.runner(action, verb, lambda: self.breaker.call(self.adapter.name, lambda: fn(self.adapter, action)))

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        retrying = self.retry.copy()
        return retrying(self.breaker.call, self.adapter.name, lambda: fn(*args, **kwargs))
