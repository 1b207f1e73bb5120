"""One small class per action type, after OpenStack Watcher's applier actions.

Each declares a params model and four verbs, all given the adapter and the action:
    pre_condition: False when the action should be skipped (its target is gone, or it is already done);
    execute: make the change, with the action id as idempotency key; it may return *undo data* (what was in
        force before, such as a scale-back's previous factor), which the applier journals (see
        :mod:`forewarn.execution.undo`) and ``revert`` reads back with :func:`~forewarn.execution.undo.undo_of`;
    post_condition: whether the change holds and its instances are healthy (checked after the bake time);
    revert: undo it (key ``<action id>:revert``); returns False when it deliberately leaves things as they
        are because undoing would put work back on a failed instance.
None of them checks dry-run: the applier never calls execute or revert in dry-run.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, ClassVar

from pydantic import Field, ValidationError, field_validator

from forewarn.capacity import scaled_back
from forewarn.cloud import CloudAdapter, find_tasks, get_instance, root_id
from forewarn.errors import AdapterError, NotFoundError, PlanError
from forewarn.execution.undo import own_params, undo_of
from forewarn.policy import actions as policy
from forewarn.schemas import Action, ActionType, Instance, InstanceState, Model

log = logging.getLogger(__name__)
LATEST = "latest"
"""A restore-snapshot's ``snapshot`` naming the newest snapshot of an earlier plan; the applier resolves it."""


def policy_default(model: type[policy.PolicyModel], name: str) -> Any:
    """The default the policy's params model gives ``name``: the executor's defaults are the policy's."""
    return model.model_fields[name].default


class NoParams(Model):
    pass


class ActionHandler:
    """Base of every action class; subclasses set ``action_type`` and ``Params`` and override the verbs."""

    action_type: ClassVar[ActionType]
    Params: ClassVar[type[Model]] = NoParams
    needs_target: ClassVar[bool] = False

    def params(self, action: Action) -> Any:
        try:
            return self.Params.model_validate(own_params(action))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "params"
            where = f"action {action.action_id} ({self.action_type})"
            raise PlanError(f"{where}: params field '{field}': {first['msg']}") from None

    def validate(self, action: Action) -> None:
        """Raise PlanError when the action cannot be carried out as written."""
        self.params(action)
        if self.needs_target and not action.target_instance_id:
            raise PlanError(f"action {action.action_id} ({self.action_type}) needs target_instance_id")

    def pre_condition(self, adapter: CloudAdapter, action: Action) -> bool:
        return True

    def execute(self, adapter: CloudAdapter, action: Action) -> dict[str, Any] | None:
        return None

    def post_condition(self, adapter: CloudAdapter, action: Action) -> bool:
        return True

    def revert(self, adapter: CloudAdapter, action: Action) -> bool:
        return True


REGISTRY: dict[ActionType, ActionHandler] = {}


def register(cls: type[ActionHandler]) -> type[ActionHandler]:
    REGISTRY[cls.action_type] = cls()
    return cls


def handler_for(action: Action) -> ActionHandler:
    try:
        return REGISTRY[action.type]
    except KeyError:
        allowed = ", ".join(sorted(t.value for t in REGISTRY))
        raise PlanError(f"action {action.action_id}: no handler for type {action.type} (allowed: {allowed})") from None


def find_instance(adapter: CloudAdapter, instance_id: str) -> Instance | None:
    """The instance as the adapter shows it (None: gone), without listing the fleet when the adapter can."""
    return get_instance(adapter, instance_id)


def task_ids_on(adapter: CloudAdapter, instance_id: str) -> set[str]:
    """The ids of the tasks on one instance, without listing every task when the adapter can."""
    return {t.task_id for t in find_tasks(adapter, instances=[instance_id])}


def healthy(adapter: CloudAdapter, instance_id: str) -> bool:
    try:
        return adapter.health(instance_id)
    except NotFoundError:
        return False


class MigrateParams(Model):
    """``fractions``: shares of each task to move, as the adapter takes them (of the task as it is now).

    The allocator's split moves instead name the chunk (``task_ids=["t1#2"]``) with ``split_of`` (``"t1"``) and
    ``fractions`` as ``{chunk: share of the original task}``; the handler turns that into a share of what is
    left of the task when the move runs, so the chunks of one task can move in any order.
    """

    fractions: list[float] | dict[str, float] | None = None
    split_of: str | None = None


@register
class Migrate(ActionHandler):
    """Move ``task_ids`` from ``instance_id`` to ``target_instance_id`` (in shares when ``fractions``)."""

    action_type = ActionType.MIGRATE
    Params = MigrateParams
    needs_target = True

    def validate(self, action: Action) -> None:
        super().validate(action)
        if not action.task_ids:
            raise PlanError(f"action {action.action_id} (migrate) names no task_ids")

    def _tasks(self, action: Action) -> list[str]:
        """The adapter's tasks this action moves: the original task for a chunk of a split."""
        split_of = self.params(action).split_of
        return [split_of] if split_of else list(action.task_ids)

    def _moved(self, adapter: CloudAdapter, action: Action) -> dict[str, bool]:
        """For each task: whether it (or, for a split, a chunk of it) is on the target."""
        on_target = task_ids_on(adapter, str(action.target_instance_id))
        if self.params(action).fractions:
            roots = {root_id(t) for t in on_target}
            return {task: task in roots for task in self._tasks(action)}
        return {task: task in on_target for task in self._tasks(action)}

    def pre_condition(self, adapter: CloudAdapter, action: Action) -> bool:
        if not healthy(adapter, str(action.target_instance_id)):
            return False
        on_source = task_ids_on(adapter, action.instance_id)
        tasks = self._tasks(action)
        return any(t in on_source for t in tasks) and not all(self._moved(adapter, action).values())

    def _shares(self, adapter: CloudAdapter, action: Action) -> list[float] | None:
        params = self.params(action)
        if not isinstance(params.fractions, dict):
            return params.fractions
        parts = find_tasks(adapter, roots=[params.split_of] if params.split_of else [])
        left = next((t for t in parts if t.task_id == params.split_of), None)
        original = sum(t.cpu for t in parts)
        if left is None or left.cpu <= 0 or original <= 0:
            raise PlanError(f"action {action.action_id} (migrate): nothing left of {params.split_of} to split")
        share = sum(params.fractions.values()) * original / left.cpu
        return None if share >= 1.0 - 1e-9 else [share]

    def execute(self, adapter: CloudAdapter, action: Action) -> dict[str, Any] | None:
        adapter.migrate(
            self._tasks(action),
            action.instance_id,
            str(action.target_instance_id),
            key=action.idempotency_key,
            fractions=self._shares(adapter, action),
        )
        return None

    def post_condition(self, adapter: CloudAdapter, action: Action) -> bool:
        return healthy(adapter, str(action.target_instance_id)) and all(self._moved(adapter, action).values())

    def revert(self, adapter: CloudAdapter, action: Action) -> bool:
        on_target = find_tasks(adapter, instances=[str(action.target_instance_id)], roots=self._tasks(action))
        back = [t.task_id for t in on_target]
        if not back:
            return True
        if not healthy(adapter, action.instance_id):
            log.warning("not moving %s back: source %s is not healthy", back, action.instance_id)
            return False
        adapter.migrate(back, str(action.target_instance_id), action.instance_id, key=f"{action.action_id}:revert")
        return True


class CordonParams(Model):
    drain: bool = policy_default(
        policy.CordonParams, "drain"
    )  # the allocator already turned a draining cordon into the migrations it needs


@register
class Cordon(ActionHandler):
    action_type = ActionType.CORDON
    Params = CordonParams

    def pre_condition(self, adapter: CloudAdapter, action: Action) -> bool:
        inst = find_instance(adapter, action.instance_id)
        return inst is not None and inst.state == InstanceState.RUNNING

    def execute(self, adapter: CloudAdapter, action: Action) -> dict[str, Any] | None:
        adapter.cordon(action.instance_id, key=action.idempotency_key)
        return None

    def post_condition(self, adapter: CloudAdapter, action: Action) -> bool:
        inst = find_instance(adapter, action.instance_id)
        return inst is not None and inst.state == InstanceState.CORDONED

    def revert(self, adapter: CloudAdapter, action: Action) -> bool:
        adapter.uncordon(action.instance_id, key=f"{action.action_id}:revert")
        return True


class ScaleBackParams(Model):
    factor: float = Field(default=policy_default(policy.ScaleBackParams, "factor"), gt=0.0, le=1.0)
    requested_factor: float | None = Field(default=None, gt=0.0, le=1.0, description="what the policy asked for")


@register
class ScaleBack(ActionHandler):
    """Run an at-risk instance at ``factor`` of its nominal capacity so less work lands on it.

    The cloud refuses it while the instance's tasks would not fit (the plan moves them off first). The
    factor in force before is journalled at execute time, and a revert restores that, not 1.0.
    """

    action_type = ActionType.SCALE_BACK
    Params = ScaleBackParams

    def pre_condition(self, adapter: CloudAdapter, action: Action) -> bool:
        return healthy(adapter, action.instance_id)

    def execute(self, adapter: CloudAdapter, action: Action) -> dict[str, Any] | None:
        before = adapter.scale(action.instance_id, factor=self.params(action).factor, key=action.idempotency_key)
        return None if before is None else {"factor": before}

    def post_condition(self, adapter: CloudAdapter, action: Action) -> bool:
        return healthy(adapter, action.instance_id)

    def revert(self, adapter: CloudAdapter, action: Action) -> bool:
        before = undo_of(action).get("factor")
        if before is None:
            log.warning("%s: the factor before it is unknown; restoring nominal capacity", action.action_id)
        factor = 1.0 if before is None else float(before)
        adapter.scale(action.instance_id, factor=factor, key=f"{action.action_id}:revert")
        return True


class ReserveParams(Model):
    fraction: float = Field(default=policy_default(policy.ReserveBufferParams, "fraction"), ge=0.0, lt=1.0)


@register
class ReserveBuffer(ActionHandler):
    action_type = ActionType.RESERVE_BUFFER
    Params = ReserveParams

    def pre_condition(self, adapter: CloudAdapter, action: Action) -> bool:
        return healthy(adapter, action.instance_id)

    def execute(self, adapter: CloudAdapter, action: Action) -> dict[str, Any] | None:
        adapter.reserve(action.instance_id, self.params(action).fraction, key=action.idempotency_key)
        return None

    def post_condition(self, adapter: CloudAdapter, action: Action) -> bool:
        return healthy(adapter, action.instance_id)

    def revert(self, adapter: CloudAdapter, action: Action) -> bool:
        adapter.reserve(action.instance_id, 0.0, key=f"{action.action_id}:revert")
        return True


class ReleaseParams(Model):
    """Which of Forewarn's holds a release lifts (each only where it is in force)."""

    uncordon: bool = policy_default(policy.ReleaseParams, "uncordon")
    restore_scale: bool = policy_default(policy.ReleaseParams, "restore_scale")
    free_buffer: bool = policy_default(policy.ReleaseParams, "free_buffer")


@register
class Release(ActionHandler):
    """Undo what Forewarn holds on an instance whose risk fell: its cordon, its scale-back and its buffer.

    ``execute`` returns what was in force (``cordoned``, ``factor``, ``reserved``) as undo data, then restores
    full capacity, frees the buffer and lifts the cordon last (so new work lands on a whole instance), each
    adapter call with its own key (``<action id>:scale``, ``:free-buffer``, ``:uncordon``). ``revert`` puts back
    exactly the holds it lifted, in the reverse order. An instance that is gone, unhealthy or holds nothing
    this release would lift is skipped, so re-runs are idempotent.
    """

    action_type = ActionType.RELEASE
    Params = ReleaseParams
    MEMORY = 1024

    def __init__(self) -> None:
        # What was in force when each release first ran in this process: the applier retries a whole execute
        # after a transient error, and the retry must record the holds the first attempt lifted, not its leftovers.
        self._first: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def _lifts(self, action: Action, inst: Instance) -> tuple[bool, bool, bool]:
        """Which holds in force on ``inst`` this release lifts: (cordon, scale-back, buffer)."""
        params = self.params(action)
        return (
            params.uncordon and inst.state == InstanceState.CORDONED,
            params.restore_scale and scaled_back(inst.capacity_factor),
            params.free_buffer and inst.reserved > 0.0,
        )

    def pre_condition(self, adapter: CloudAdapter, action: Action) -> bool:
        inst = find_instance(adapter, action.instance_id)
        if inst is None or not healthy(adapter, action.instance_id):
            return False
        return any(self._lifts(action, inst))

    def execute(self, adapter: CloudAdapter, action: Action) -> dict[str, Any] | None:
        inst = find_instance(adapter, action.instance_id)
        if inst is None:
            raise NotFoundError(f"release: no instance {action.instance_id!r}")
        cordoned, scaled, buffered = self._lifts(action, inst)
        now = {
            "cordoned": inst.state == InstanceState.CORDONED,
            "factor": inst.capacity_factor,
            "reserved": inst.reserved,
        }
        undo = self._first.setdefault(action.action_id, now)
        while len(self._first) > self.MEMORY:
            self._first.popitem(last=False)
        key = action.idempotency_key
        if scaled:
            before = adapter.scale(action.instance_id, factor=1.0, key=f"{key}:scale")
            if before is not None and undo is now:  # a used key answers what was in force before its first call
                undo["factor"] = before
        if buffered:
            adapter.reserve(action.instance_id, 0.0, key=f"{key}:free-buffer")
        if cordoned:
            adapter.uncordon(action.instance_id, key=f"{key}:uncordon")
        return undo

    def post_condition(self, adapter: CloudAdapter, action: Action) -> bool:
        inst = find_instance(adapter, action.instance_id)
        if inst is None or not healthy(adapter, action.instance_id):
            return False
        return not any(self._lifts(action, inst))

    def revert(self, adapter: CloudAdapter, action: Action) -> bool:
        undo, params = undo_of(action), self.params(action)
        if not undo:
            log.warning("%s: nothing recorded of the holds it lifted; leaving the instance as it is", action.action_id)
            return True
        key = f"{action.action_id}:revert"
        if params.uncordon and undo.get("cordoned"):
            adapter.cordon(action.instance_id, key=f"{key}:cordon")
        reserved = float(undo.get("reserved") or 0.0)
        if params.free_buffer and reserved > 0.0:
            adapter.reserve(action.instance_id, reserved, key=f"{key}:reserve")
        factor = float(undo.get("factor") or 1.0)
        if params.restore_scale and scaled_back(factor):
            adapter.scale(action.instance_id, factor=factor, key=f"{key}:scale")
        return True


class AutoscaleParams(Model):
    """What the allocator asks of a group: ``delta`` instances more (or fewer, when negative)."""

    group: str | None = None
    delta: int = 1
    tasks: list[str] = Field(default_factory=list, description="scale-up: tasks waiting for the new room")
    instances: list[str] = Field(default_factory=list, description="scale-down: the empty instances to let go")

    @field_validator("delta")
    @classmethod
    def _not_zero(cls, delta: int) -> int:
        if delta == 0:
            raise ValueError("delta must not be 0")
        return delta


@register
class Autoscale(ActionHandler):
    """Add ``delta`` instances to ``group`` (remove when negative; default group: that of ``instance_id``)."""

    action_type = ActionType.AUTOSCALE
    Params = AutoscaleParams

    def _group(self, adapter: CloudAdapter, action: Action) -> str:
        group = self.params(action).group
        if group:
            return str(group)
        inst = find_instance(adapter, action.instance_id)
        if inst is None:
            raise NotFoundError(f"autoscale: no instance {action.instance_id!r} to take the group from")
        return inst.group

    def execute(self, adapter: CloudAdapter, action: Action) -> dict[str, Any] | None:
        adapter.scale(self._group(adapter, action), delta=self.params(action).delta, key=action.idempotency_key)
        return None

    def revert(self, adapter: CloudAdapter, action: Action) -> bool:
        group = self._group(adapter, action)
        adapter.scale(group, delta=-self.params(action).delta, key=f"{action.action_id}:revert")
        return True


class RestoreSnapshotParams(Model):
    """The policy's ``snapshot``: a snapshot id, or ``latest`` (resolved by the applier from the journal)."""

    snapshot: str = Field(default=policy_default(policy.RestoreSnapshotParams, "snapshot"), min_length=1)


@register
class RestoreSnapshot(ActionHandler):
    """Restore a snapshot. It cannot be reverted; a failing plan restores its own snapshot instead.

    The applier hands it the action with ``latest`` already resolved to an id (see :data:`LATEST`)."""

    action_type = ActionType.RESTORE_SNAPSHOT
    Params = RestoreSnapshotParams

    def execute(self, adapter: CloudAdapter, action: Action) -> dict[str, Any] | None:
        snapshot = self.params(action).snapshot
        if snapshot == LATEST:
            raise PlanError(f"action {action.action_id} (restore-snapshot): 'latest' was not resolved to a snapshot id")
        adapter.restore(snapshot, key=action.idempotency_key)
        return {"snapshot": snapshot}

    def revert(self, adapter: CloudAdapter, action: Action) -> bool:
        raise AdapterError(f"action {action.action_id}: a snapshot restore cannot be reverted step by step")


class NotifyParams(Model):
    channel: str = Field(default=policy_default(policy.NotifyParams, "channel"), min_length=1)
    message: str = policy_default(policy.NotifyParams, "message")


@register
class Notify(ActionHandler):
    """Tell a person: a warning on the ``forewarn.notify.<channel>`` logger (route it with logging config)."""

    action_type = ActionType.NOTIFY
    Params = NotifyParams

    def execute(self, adapter: CloudAdapter, action: Action) -> dict[str, Any] | None:
        params = self.params(action)
        logging.getLogger(f"forewarn.notify.{params.channel}").warning(
            "forewarn: %s: %s", action.instance_id, params.message or action.reason.rule
        )
        return None


@register
class NoAction(ActionHandler):
    action_type = ActionType.NONE
