"""The apply-plan flow: each action's change is a Prefect task run with retries; the flow's state tells the outcome.

A plan starts only through :func:`forewarn.approval.approve_and_run` (the checks of ``forewarn plan approve``);
``run_plan`` finishes one a crash left RUNNING. Either way the :class:`~forewarn.execution.applier.Applier`
hands every execute and revert to :func:`prefect_runner`, so each shows as a task run named after the action
(``execute a-1f (migrate)``, ``revert a-1f (migrate)``), retried with exponential backoff and jitter on
transient adapter errors only.
``plan_state`` turns the plan's end into the flow's state: Completed for SUCCEEDED, Failed with the reason
for ROLLED_BACK or FAILED.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from prefect import Task, flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import Completed, Failed, State
from prefect.tasks import exponential_backoff

from forewarn import approval, compose, service
from forewarn.cloud import CloudAdapter
from forewarn.errors import AdapterError, PlanError
from forewarn.execution.applier import Applier
from forewarn.execution.journal import Journal
from forewarn.execution.runner import ActionRunner
from forewarn.schemas import Action, ActionState, Plan, PlanState, utcnow

T = TypeVar("T")
RETRIES = 3
BACKOFF_SECONDS = 1.0
RUNS = (PlanState.RECOMMENDED, PlanState.APPROVED)
"""The plans the flow starts (after the approval's checks)."""


def _transient(_task: Task[..., Any], _run: TaskRun, state: State[Any]) -> bool:
    """Retry only what may pass on a second try: throttling, time-outs, 5xx."""
    try:
        state.result()
    except AdapterError as exc:
        return exc.retryable
    except Exception:
        return False
    return False


def _run_change(action_id: str, verb: str, call: Callable[[], Any]) -> Any:
    """One change (execute or revert) of one action (idempotent by key, so a retry never acts twice)."""
    return call()


change_task = task(name="action", cache_policy=NO_CACHE, retry_condition_fn=_transient)(_run_change)
"""The Prefect task each change runs as (:func:`prefect_runner` names each run after its action)."""


def prefect_runner(*, retries: int = RETRIES, backoff_seconds: float = BACKOFF_SECONDS) -> ActionRunner:
    """An ActionRunner that makes each change a Prefect task run with ``retries`` and exponential backoff."""

    def run(action: Action, verb: str, call: Callable[[], T], /) -> T:
        named = change_task.with_options(
            name=f"{verb}-{action.type.value}",
            task_run_name=f"{verb} {action.action_id} ({action.type.value})",
            retries=retries,
            retry_delay_seconds=exponential_backoff(backoff_seconds) if retries and backoff_seconds else 0,
            retry_jitter_factor=0.5,
        )
        return cast(T, named(action.action_id, verb, call))

    return run


def run_plan(
    adapter: CloudAdapter,
    journal: Journal,
    plan: Plan,
    *,
    dry_run: bool,
    retries: int | None = None,
    backoff_seconds: float | None = None,
    bake_seconds: float = 0.0,
) -> Plan:
    """Finish a RUNNING plan a crash interrupted, each change as a task run (a plan that has not started runs
    only through :func:`forewarn.approval.approve_and_run`: see :func:`apply_plan`).

    Retries of the changes are Prefect's (default :data:`RETRIES`, backoff from :data:`BACKOFF_SECONDS`);
    reads (pre- and post-conditions) keep the applier's own retries.
    Returns the plan as it ended; see :func:`plan_state` for the flow state that goes with it.
    """
    applier = Applier(
        adapter, journal, dry_run=dry_run, bake_seconds=bake_seconds, runner=runner(retries, backoff_seconds)
    )
    return applier.resume(plan.plan_id)


def runner(retries: int | None = None, backoff_seconds: float | None = None) -> ActionRunner:
    """:func:`prefect_runner` with the module's defaults (read when called, so tests may change them)."""
    return prefect_runner(
        retries=RETRIES if retries is None else retries,
        backoff_seconds=BACKOFF_SECONDS if backoff_seconds is None else backoff_seconds,
    )


def plan_state(plan: Plan) -> State[Any]:
    """Completed when the plan SUCCEEDED; Failed, saying it was rolled back or failed and why, otherwise."""
    reason = plan.notes[-1] if plan.notes else "no reason recorded"
    for prefix in ("rolled back: ", "FAILED: "):
        reason = reason.removeprefix(prefix)
    if plan.state == PlanState.ROLLED_BACK:
        return Failed(message=f"plan {plan.plan_id} rolled back: {reason}")
    if plan.state == PlanState.FAILED:
        return Failed(message=f"plan {plan.plan_id} failed and could not roll back: {reason}")
    if plan.state == PlanState.SUCCEEDED:
        done = sum(1 for a in plan.actions if a.state == ActionState.SUCCEEDED)
        return Completed(message=f"plan {plan.plan_id} succeeded: {done} of {len(plan.actions)} action(s) applied")
    return Failed(message=f"plan {plan.plan_id} ended {plan.state}, not SUCCEEDED")


def cloud_for(ctx: service.Context) -> CloudAdapter:
    """The cloud the settings name (the simulated one as the last cycle left it)."""
    return compose.cloud(ctx)


@flow(name="apply-plan", log_prints=True)
def apply_plan(plan_id: str, dry_run: bool = True) -> State[Any]:
    """Run a plan from the journal through the configured cloud (dry-run by default).

    A plan that has not started (RECOMMENDED, or APPROVED by an auto-mode cycle that did not get to run it) goes
    through the checks of ``forewarn plan approve`` (:func:`forewarn.approval.approve_and_run`: its age, the
    guardrails as they stand now, claims on its instances); refused, it stays as it was and the flow run
    fails with the one-line reason. A plan a crash left RUNNING is finished instead. The flow run ends
    Completed when the plan SUCCEEDED, Failed (saying it was rolled back or failed, and why) otherwise.

    Args:
        plan_id: the plan, as ``forewarn plan list`` shows it.
        dry_run: record what would be done and change nothing (the default).
    """
    ctx = service.context(dry_run=dry_run)
    plan = ctx.journal.get(plan_id)
    cloud = cloud_for(ctx)
    if plan.state == PlanState.RUNNING:
        return plan_state(run_plan(cloud, ctx.journal, plan, dry_run=dry_run))
    try:
        ended = approval.approve_and_run(ctx, cloud, plan_id, now=utcnow(), runner=runner(), states=RUNS)
    except PlanError as exc:
        return Failed(message=str(exc))
    return plan_state(ended)
