"""Turn risk scores into decisions: bands with hysteresis, then the first matching rule per instance.

Bands come from the policy, never from the model. Moving up a band is immediate; moving down waits until
the instance has spent ``min-dwell-minutes`` in its band, so a score hovering at a threshold does not flap.

When the model is not fresh (or there are no scores) the fallback static policy decides: an instance whose
feature reaches any ``static-thresholds`` value counts as high risk. Only rules that say
``model-fresh: false`` apply then; instances none of them match get ``fallback.action``.

An instance carrying the opt-out tag gets a ``none`` decision with rule ``opt-out``; tasks carrying it are
listed in ``Decision.params["opt_out_task_ids"]`` so allocation leaves them where they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from pydantic import Field

from forewarn.policy.actions import PolicyModel, default_params, get_action
from forewarn.policy.schema import Bands, Match, Policy
from forewarn.schemas import (
    OPT_OUT_RULE,
    ActionType,
    Band,
    Decision,
    Instance,
    InstanceState,
    RiskScore,
    Task,
    UtcDatetime,
)

_ORDER = {Band.LOW: 0, Band.MODERATE: 1, Band.HIGH: 2}
FALLBACK_RULE = "fallback"


def band_for(probability: float, bands: Bands, previous: Band | None = None) -> Band:
    """The band of ``probability`` given the band the instance was in (hysteresis, no dwell).

    With no previous band the ``enter`` thresholds alone decide.
    """
    if probability >= bands.high.enter:
        return Band.HIGH
    if previous is Band.HIGH and probability >= bands.high.exit:
        return Band.HIGH
    if previous in (Band.HIGH, Band.MODERATE) and probability >= bands.moderate.exit:
        return Band.MODERATE
    if probability >= bands.moderate.enter:
        return Band.MODERATE
    return Band.LOW


class BandState(PolicyModel):
    """The band an instance is in and since when."""

    band: Band
    since: UtcDatetime


class BandTracker(PolicyModel):
    """Band of every instance across cycles; persist it with ``model_dump`` / ``model_validate``."""

    bands: Bands = Field(default_factory=Bands)
    states: dict[str, BandState] = Field(default_factory=dict)

    def update(self, instance_id: str, probability: float, now: datetime) -> Band:
        """Record a new probability for an instance and return its band now."""
        state = self.states.get(instance_id)
        previous = state.band if state is not None else None
        wanted = band_for(probability, self.bands, previous)
        if state is None:
            self.states[instance_id] = BandState(band=wanted, since=now)
            return wanted
        if wanted == state.band:
            return state.band
        moving_down = _ORDER[wanted] < _ORDER[state.band]
        if moving_down and now - state.since < timedelta(minutes=self.bands.min_dwell_minutes):
            return state.band
        self.states[instance_id] = BandState(band=wanted, since=now)
        return wanted

    def forget(self, instance_ids: Sequence[str]) -> None:
        """Drop instances that left the fleet."""
        for instance_id in instance_ids:
            self.states.pop(instance_id, None)


def _tags_match(wanted: Mapping[str, str], tags: Mapping[str, str]) -> bool:
    return all(key in tags and (value == "*" or tags[key] == value) for key, value in wanted.items())


def matches(match: Match, band: Band, instance: Instance, tasks: Sequence[Task], model_fresh: bool) -> bool:
    """Whether every condition of ``match`` holds for this instance."""
    if match.model_fresh is not None and match.model_fresh != model_fresh:
        return False
    if not model_fresh and match.model_fresh is None:
        return False
    if match.band is not None and match.band != band:
        return False
    if match.groups and instance.group not in match.groups:
        return False
    if match.workload_kinds and not any(task.kind in match.workload_kinds for task in tasks):
        return False
    return _tags_match(match.tags, instance.tags)


class PolicyEngine:
    """Decides, per instance, what the policy wants done. Holds the band tracker between cycles."""

    def __init__(self, policy: Policy, tracker: BandTracker | None = None) -> None:
        self.policy = policy
        self.tracker = tracker if tracker is not None else BandTracker(bands=policy.bands)
        self.tracker.bands = policy.bands
        self.last_bands: dict[str, Band] = {}
        """Band of every instance considered by the last :meth:`decide`, matched by a rule or not."""

    def decide(
        self,
        scores: Sequence[RiskScore],
        instances: Sequence[Instance],
        tasks: Sequence[Task],
        *,
        now: datetime,
        model_fresh: bool = True,
        features: Mapping[str, Mapping[str, float]] | None = None,
    ) -> list[Decision]:
        """One decision per instance a rule (or the fallback) matched, in the order of ``instances``.

        Instances that are failed or terminated, or have no score (model in use) are skipped.
        """
        fresh = model_fresh and bool(scores)
        latest: dict[str, RiskScore] = {}
        for score in scores:
            if score.instance_id not in latest or score.timestamp >= latest[score.instance_id].timestamp:
                latest[score.instance_id] = score
        by_instance: dict[str, list[Task]] = {}
        for task in tasks:
            if task.instance_id is not None:
                by_instance.setdefault(task.instance_id, []).append(task)
        decisions: list[Decision] = []
        self.last_bands = {}
        for instance in instances:
            if instance.state in (InstanceState.FAILED, InstanceState.TERMINATED):
                continue
            own = by_instance.get(instance.instance_id, [])
            if fresh:
                current = latest.get(instance.instance_id)
                if current is None:
                    continue
                band = self.tracker.update(instance.instance_id, current.probability, now)
                decision = self._by_rules(band, instance, own, True, current)
            else:
                band, triggered = self._static_band(instance.instance_id, features or {})
                decision = self._by_rules(band, instance, own, False, None)
                if decision is None and band is Band.HIGH:
                    decision = self._fallback(instance, triggered)
            self.last_bands[instance.instance_id] = band
            if decision is None:
                decision = self._opt_out_only(band, instance, own)
            if decision is not None:
                decisions.append(self._honour_opt_out(decision, instance, own))
        return decisions

    def _opt_out_only(self, band: Band, instance: Instance, tasks: Sequence[Task]) -> Decision | None:
        """No rule matched, but opted-out work is there: say so, so that allocation never moves it."""
        tag = self.policy.opt_out_tag
        if tag not in instance.tags and not any(tag in task.tags for task in tasks):
            return None
        rule = OPT_OUT_RULE if tag in instance.tags else "opt-out-tasks"
        return Decision(instance_id=instance.instance_id, band=band, action=ActionType.NONE, rule=rule)

    def _by_rules(
        self, band: Band, instance: Instance, tasks: Sequence[Task], fresh: bool, score: RiskScore | None
    ) -> Decision | None:
        for rule in self.policy.rules:
            if matches(rule.match, band, instance, tasks, fresh):
                return Decision(
                    instance_id=instance.instance_id,
                    band=band,
                    action=ActionType(rule.action.type),
                    rule=rule.name,
                    probability=score.probability if score is not None else None,
                    top_features=list(score.top_features) if score is not None else [],
                    params=get_action(rule.action.type).process(rule.action),
                )
        return None

    def _static_band(self, instance_id: str, features: Mapping[str, Mapping[str, float]]) -> tuple[Band, list[str]]:
        values = features.get(instance_id, {})
        triggered = [
            f"{name}={values[name]:g}>={limit:g}"
            for name, limit in sorted(self.policy.fallback.static_thresholds.items())
            if name in values and values[name] >= limit
        ]
        return (Band.HIGH if triggered else Band.LOW), triggered

    def _fallback(self, instance: Instance, triggered: list[str]) -> Decision:
        kind = self.policy.fallback.action
        params = get_action(kind.value).process(default_params(kind.value))
        params["triggered"] = triggered
        return Decision(
            instance_id=instance.instance_id, band=Band.HIGH, action=kind, rule=FALLBACK_RULE, params=params
        )

    def _honour_opt_out(self, decision: Decision, instance: Instance, tasks: Sequence[Task]) -> Decision:
        tag = self.policy.opt_out_tag
        if tag in instance.tags:
            return Decision(
                instance_id=instance.instance_id,
                band=decision.band,
                action=ActionType.NONE,
                rule=OPT_OUT_RULE,
                probability=decision.probability,
                top_features=decision.top_features,
                params={"wanted_rule": decision.rule, "wanted_action": decision.action.value},
            )
        pinned = [task.task_id for task in tasks if tag in task.tags]
        if pinned:
            decision.params["opt_out_task_ids"] = pinned
        return decision
