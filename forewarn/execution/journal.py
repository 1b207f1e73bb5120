"""The write-ahead journal of plans and actions, in the historical repository.

A plan is saved before anything runs. Before an action touches the cloud its *intent* is written; after,
its *outcome*. An intent without an outcome after a crash is an *interrupted* action, which
``Applier.recover`` resolves. Every state change is a conditional update (``WHERE state = <expected>``),
so two appliers racing for one action cannot both run it.

Plan states: RECOMMENDED -> APPROVED -> RUNNING -> SUCCEEDED | FAILED | ROLLED_BACK; RECOMMENDED and
APPROVED may be CANCELLED; SHADOW plans are only recorded. Action states: PENDING -> RUNNING (intent) ->
SUCCEEDED | FAILED | SKIPPED (outcome); PENDING -> SKIPPED (dry-run); SUCCEEDED | FAILED -> REVERTED.
For a SKIPPED, FAILED or REVERTED action, ``Action.error`` says why (e.g. ``dry-run``).

Actions are stored in the order they run (:func:`~forewarn.execution.order.run_order`). What an action's
execute returned for its revert is kept in its params under :data:`~forewarn.execution.undo.UNDO`.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from forewarn.errors import PlanError
from forewarn.execution.order import run_order
from forewarn.execution.undo import UNDO
from forewarn.policy.limits import ActionRecord
from forewarn.schemas import Action, ActionReason, ActionState, ActionType, Plan, PlanState, utcnow
from forewarn.store.database import Database
from forewarn.store.models import ActionRow, PlanRow, SnapshotRow

P, A = PlanState, ActionState
PLAN_TRANSITIONS: dict[PlanState, set[PlanState]] = {
    P.RECOMMENDED: {P.APPROVED, P.CANCELLED},
    P.APPROVED: {P.RUNNING, P.CANCELLED, P.RECOMMENDED},  # back to RECOMMENDED: an approval that could not start
    P.RUNNING: {P.SUCCEEDED, P.FAILED, P.ROLLED_BACK},
}
ACTION_TRANSITIONS: dict[ActionState, set[ActionState]] = {
    A.PENDING: {A.RUNNING, A.SKIPPED},
    A.RUNNING: {A.SUCCEEDED, A.FAILED, A.SKIPPED},
    A.SUCCEEDED: {A.REVERTED},
    A.FAILED: {A.REVERTED},
}
INITIAL_PLAN_STATES = {P.RECOMMENDED, P.APPROVED, P.SHADOW}
HOLDS = (ActionType.CORDON, ActionType.SCALE_BACK, ActionType.RESERVE_BUFFER)
"""The actions that hold an instance back until a release undoes them."""


def _action(row: ActionRow) -> Action:
    return Action(
        action_id=row.action_id,
        type=row.type,
        instance_id=row.instance_id,
        target_instance_id=row.target_instance_id,
        task_ids=list(row.task_ids),
        params=dict(row.params),
        reason=ActionReason.model_validate(row.reason),
        state=ActionState(row.state),
        error=row.error,
    )


def _plan(row: PlanRow, actions: builtins.list[ActionRow]) -> Plan:
    return Plan(
        plan_id=row.plan_id,
        created_at=row.created_at,
        policy=row.policy,
        mode=row.mode,
        state=PlanState(row.state),
        model_version=row.model_version,
        notes=list(row.notes),
        actions=[_action(a) for a in sorted(actions, key=lambda a: a.seq)],
    )


def open_journal(url: str | None = None) -> Journal:
    """The journal of ``url`` (default: the settings' database), its schema brought to the newest migration."""
    database = Database(url)
    database.create_all()
    return Journal(database)


class Journal:
    """Plans and the write-ahead record of their actions."""

    def __init__(self, repo: Database) -> None:
        self.repo = repo

    # -- plans ---------------------------------------------------------------------------------------------
    def save_plan(self, plan: Plan) -> Plan:
        """Persist a new plan (state RECOMMENDED, APPROVED or SHADOW; every action PENDING)."""
        if plan.state not in INITIAL_PLAN_STATES:
            raise PlanError(f"plan {plan.plan_id}: must start RECOMMENDED, APPROVED or SHADOW, not {plan.state}")
        started = [a.action_id for a in plan.actions if a.state != A.PENDING]
        if started:
            raise PlanError(f"plan {plan.plan_id}: new actions must be pending; not pending: {', '.join(started)}")
        if any(UNDO in a.params for a in plan.actions):
            raise PlanError(f"plan {plan.plan_id}: params key {UNDO!r} is reserved for the journal")
        with self.repo.session() as session, session.begin():
            if session.get(PlanRow, plan.plan_id) is not None:
                raise PlanError(f"plan {plan.plan_id} is already in the journal")
            ids = [a.action_id for a in plan.actions]
            taken = session.scalars(select(ActionRow.action_id).where(ActionRow.action_id.in_(ids))).all()
            if taken or len(set(ids)) != len(ids):
                dup = ", ".join(taken) or "within the plan"
                raise PlanError(f"plan {plan.plan_id}: action ids are idempotency keys and must be unique ({dup})")
            now = utcnow()
            session.add(
                PlanRow(
                    plan_id=plan.plan_id,
                    created_at=plan.created_at,
                    updated_at=now,
                    policy=plan.policy,
                    mode=plan.mode.value,
                    state=plan.state.value,
                    model_version=plan.model_version,
                    notes=plan.notes,
                )
            )
            session.flush()
            for seq, action in enumerate(run_order(plan.actions)):
                session.add(
                    ActionRow(
                        action_id=action.action_id,
                        plan_id=plan.plan_id,
                        seq=seq,
                        type=action.type.value,
                        instance_id=action.instance_id,
                        target_instance_id=action.target_instance_id,
                        task_ids=action.task_ids,
                        params=action.params,
                        reason=action.reason.model_dump(mode="json"),
                        state=action.state.value,
                        error=action.error,
                    )
                )
        return self.get(plan.plan_id)

    def get(self, plan_id: str) -> Plan:
        with self.repo.session() as session:
            row = session.get(PlanRow, plan_id)
            if row is None:
                raise PlanError(f"no plan {plan_id!r} in the journal")
            return _plan(row, self._actions(session, plan_id))

    def exists(self, plan_id: str) -> bool:
        with self.repo.session() as session:
            return session.get(PlanRow, plan_id) is not None

    def list(self, state: PlanState | None = None) -> builtins.list[Plan]:
        """Plans, oldest first, optionally only those in ``state``."""
        query = select(PlanRow).order_by(PlanRow.created_at, PlanRow.plan_id)
        if state is not None:
            query = query.where(PlanRow.state == PlanState(state).value)
        with self.repo.session() as session:
            return [_plan(row, self._actions(session, row.plan_id)) for row in session.scalars(query).all()]

    def approve(self, plan_id: str) -> Plan:
        return self.transition(plan_id, P.APPROVED)

    def cancel(self, plan_id: str) -> Plan:
        return self.transition(plan_id, P.CANCELLED)

    def transition(self, plan_id: str, state: PlanState, note: str | None = None) -> Plan:
        """Move a plan to ``state``; raises PlanError when that is not a legal next state."""
        with self.repo.session() as session, session.begin():
            row = session.get(PlanRow, plan_id)
            if row is None:
                raise PlanError(f"no plan {plan_id!r} in the journal")
            current = PlanState(row.state)
            if state not in PLAN_TRANSITIONS.get(current, set()):
                allowed = ", ".join(sorted(PLAN_TRANSITIONS.get(current, set()))) or "none"
                raise PlanError(f"plan {plan_id} is {current}; it cannot become {state} (allowed next: {allowed})")
            values: dict[str, Any] = {"state": state.value, "updated_at": utcnow()}
            if note:
                values["notes"] = [*row.notes, note]
            self._conditional(
                session,
                PlanRow,
                PlanRow.plan_id == plan_id,
                PlanRow.state == current.value,
                values,
                f"plan {plan_id} changed state concurrently",
            )
        return self.get(plan_id)

    def add_note(self, plan_id: str, note: str) -> None:
        with self.repo.session() as session, session.begin():
            row = session.get(PlanRow, plan_id)
            if row is None:
                raise PlanError(f"no plan {plan_id!r} in the journal")
            row.notes = [*row.notes, note]

    def begin_rollback(self, plan_id: str, reason: str) -> None:
        """Mark a running plan as rolling back (so recovery finishes the rollback) and note why."""
        with self.repo.session() as session, session.begin():
            row = session.get(PlanRow, plan_id)
            if row is None or row.state != P.RUNNING.value:
                raise PlanError(f"plan {plan_id} is not running; it cannot roll back")
            if not row.rolling_back:
                row.rolling_back = True
                row.notes = [*row.notes, f"rolling back: {reason}"]

    def is_rolling_back(self, plan_id: str) -> bool:
        with self.repo.session() as session:
            row = session.get(PlanRow, plan_id)
            return bool(row and row.rolling_back)

    # -- actions -------------------------------------------------------------------------------------------
    def record_intent(self, plan_id: str, action: Action) -> None:
        """Write that ``action`` is about to run (PENDING -> RUNNING). Its idempotency key is its id."""
        self._move_action(plan_id, action.action_id, A.RUNNING, intent_at=utcnow())

    def record_outcome(
        self,
        plan_id: str,
        action_id: str,
        state: ActionState,
        error: str | None = None,
        *,
        applied: bool | None = None,
        at: datetime | None = None,
    ) -> None:
        """Write how an action ended, at ``at`` (the applier's clock; default now). ``applied`` (default: state
        is SUCCEEDED) marks it for revert. A SUCCEEDED outcome is also the guardrails' charge (see
        :meth:`charges`): one conditional update records both."""
        state = ActionState(state)
        self._move_action(plan_id, action_id, state, **self._outcome(state, error, applied, at))

    def record_outcomes(
        self, plan_id: str, outcomes: Sequence[tuple[str, ActionState, str | None]], *, at: datetime | None = None
    ) -> None:
        """Write how several actions ended (``(action_id, state, error)``, as :meth:`record_outcome`) in one
        transaction: all or none. For the outcomes that touch no cloud (a dry run's, the skips of a plan that
        ends early), so a plan of many actions costs one commit, not one per action."""
        if not outcomes:
            return
        with self.repo.session() as session, session.begin():
            self._actions(session, plan_id)  # one query: the rows below come from the session, not one each
            for action_id, state, error in outcomes:
                state = ActionState(state)
                self._move_in(session, plan_id, action_id, state, self._outcome(state, error, None, at))

    @staticmethod
    def _outcome(state: ActionState, error: str | None, applied: bool | None, at: datetime | None) -> dict[str, Any]:
        values: dict[str, Any] = {"error": error, "outcome_at": at or utcnow()}
        if state != A.REVERTED:
            values["applied"] = state == A.SUCCEEDED if applied is None else applied
        return values

    def record_undo(self, plan_id: str, action_id: str, undo: dict[str, Any]) -> None:
        """Keep what an action's execute returned for its revert; the first record stands (a re-run repeats it)."""
        with self.repo.session() as session, session.begin():
            row = self._action_row(session, plan_id, action_id)
            if UNDO not in row.params:
                row.params = {**row.params, UNDO: undo}

    def record_revert_intent(self, plan_id: str, action_id: str) -> None:
        with self.repo.session() as session, session.begin():
            row = self._action_row(session, plan_id, action_id)
            row.revert_intent_at = row.revert_intent_at or utcnow()

    def to_revert(self, plan_id: str) -> builtins.list[Action]:
        """Actions that took effect and are not reverted yet, in plan order."""
        query = select(ActionRow).where(
            ActionRow.plan_id == plan_id, ActionRow.applied.is_(True), ActionRow.state != A.REVERTED.value
        )
        with self.repo.session() as session:
            return [_action(r) for r in sorted(session.scalars(query).all(), key=lambda r: r.seq)]

    def interrupted(self) -> builtins.list[tuple[Plan, Action]]:
        """Actions whose intent was written but not their outcome, with their plans."""
        out: builtins.list[tuple[Plan, Action]] = []
        for plan in self.list(P.RUNNING):
            out.extend((plan, a) for a in plan.actions if a.state == A.RUNNING)
        return out

    def holds(self) -> set[str]:
        """Instances on which Forewarn's last applied hold (cordon, scale-back, reserve-buffer) has not been
        released since: what a release may undo. Holds a rollback reverted do not count; one query."""
        kinds = [t.value for t in (*HOLDS, ActionType.RELEASE)]
        query = (
            select(ActionRow.instance_id, ActionRow.type)
            .where(ActionRow.state == A.SUCCEEDED.value, ActionRow.type.in_(kinds))
            .order_by(ActionRow.outcome_at, ActionRow.seq)
        )
        last: dict[str, str] = {}
        with self.repo.session() as session:
            for instance_id, kind in session.execute(query):
                last[instance_id] = kind
        return {i for i, kind in last.items() if kind != ActionType.RELEASE.value}

    def charges(self, since: datetime | None = None) -> builtins.list[ActionRecord]:
        """The actions that succeeded (after ``since``), oldest first: what cooldowns and window budgets count.

        Only a SUCCEEDED outcome charges; a recommend-mode plan not yet run, a dry run (SKIPPED), an action
        dropped by claims (never journalled as run), a failed or skipped one charge nothing."""
        query = select(ActionRow).where(ActionRow.state == A.SUCCEEDED.value, ActionRow.outcome_at.is_not(None))
        if since is not None:
            query = query.where(ActionRow.outcome_at > since)
        with self.repo.session() as session:
            rows = session.scalars(query.order_by(ActionRow.outcome_at, ActionRow.seq)).all()
            return [
                ActionRecord(
                    action_id=r.action_id,
                    instance_id=r.instance_id,
                    type=ActionType(r.type),
                    at=r.outcome_at,
                    target_instance_id=r.target_instance_id,
                    removed=[str(i) for i in (r.params or {}).get("instances") or []],
                )
                for r in rows
            ]

    def in_flight_migrations(self) -> builtins.list[ActionRecord]:
        """Migrations of RUNNING plans that have not ended yet (pending or between intent and outcome)."""
        query = (
            select(ActionRow, PlanRow.created_at)
            .join(PlanRow, PlanRow.plan_id == ActionRow.plan_id)
            .where(
                PlanRow.state == P.RUNNING.value,
                ActionRow.type == ActionType.MIGRATE.value,
                ActionRow.state.in_([A.PENDING.value, A.RUNNING.value]),
            )
        )
        with self.repo.session() as session:
            return [
                ActionRecord(
                    action_id=r.action_id,
                    instance_id=r.instance_id,
                    type=ActionType.MIGRATE,
                    at=created,
                    target_instance_id=r.target_instance_id,
                )
                for r, created in session.execute(query).all()
            ]

    def record_snapshot(self, plan_id: str, snapshot_id: str, *, adapter: str) -> None:
        self.repo.save_snapshot(snapshot_id, adapter=adapter, plan_id=plan_id)

    def snapshot_of(self, plan_id: str) -> str | None:
        return self.repo.snapshot_of(plan_id)

    def latest_snapshot(self, adapter: str, *, before: str) -> str | None:
        """The newest snapshot taken on ``adapter`` for a plan other than ``before``: what a rollback to
        ``latest`` restores (the plan's own snapshot is the state it started from, not an earlier one)."""
        query = (
            select(SnapshotRow.snapshot_id)
            .where(SnapshotRow.adapter == adapter, SnapshotRow.plan_id != before)
            .order_by(SnapshotRow.id.desc())
            .limit(1)
        )
        with self.repo.session() as session:
            return session.scalars(query).first()

    # -- internals -----------------------------------------------------------------------------------------
    @staticmethod
    def _actions(session: Session, plan_id: str) -> builtins.list[ActionRow]:
        return list(session.scalars(select(ActionRow).where(ActionRow.plan_id == plan_id)).all())

    @staticmethod
    def _action_row(session: Session, plan_id: str, action_id: str) -> ActionRow:
        row = session.get(ActionRow, action_id)
        if row is None or row.plan_id != plan_id:
            raise PlanError(f"plan {plan_id} has no action {action_id!r}")
        return row

    def _move_action(self, plan_id: str, action_id: str, state: ActionState, **values: Any) -> None:
        with self.repo.session() as session, session.begin():
            self._move_in(session, plan_id, action_id, state, values)

    def _move_in(
        self, session: Session, plan_id: str, action_id: str, state: ActionState, values: dict[str, Any]
    ) -> None:
        row = self._action_row(session, plan_id, action_id)
        current = ActionState(row.state)
        if state not in ACTION_TRANSITIONS.get(current, set()):
            raise PlanError(f"action {action_id} of plan {plan_id} is {current}; it cannot become {state}")
        self._conditional(
            session,
            ActionRow,
            ActionRow.action_id == action_id,
            ActionRow.state == current.value,
            {"state": state.value, **values},
            f"action {action_id} changed state concurrently; it is not run twice",
        )

    @staticmethod
    def _conditional(session: Session, table: Any, key: Any, expected: Any, values: dict[str, Any], msg: str) -> None:
        result = session.execute(
            update(table).where(key, expected).values(**values).execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise PlanError(msg)
