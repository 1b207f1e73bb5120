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

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import Field

from forewarn.capacity import scaled_back
from forewarn.policy.actions import PolicyModel, default_params, get_action
from forewarn.policy.schema import Bands, Match, Policy, Rule
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

if TYPE_CHECKING:
    import numpy as np

_ORDER = {Band.LOW: 0, Band.MODERATE: 1, Band.HIGH: 2}
_BY_CODE = (Band.LOW, Band.MODERATE, Band.HIGH)
FALLBACK_RULE = "fallback"


def _band_tests(probability: Any, bands: Bands, previous: Any) -> tuple[Any, Any]:
    """The band rule, written once for one score or many (floats or numpy arrays alike): whether the score
    is high and whether it is at least moderate, given the previous band's code (-1 none, 0 low, 1 moderate,
    2 high). Moving up takes reaching ``enter``; staying takes reaching ``exit``; NaN compares false (low)."""
    high = (probability >= bands.high.enter) | ((previous == 2) & (probability >= bands.high.exit))
    moderate = ((previous >= 1) & (probability >= bands.moderate.exit)) | (probability >= bands.moderate.enter)
    return high, moderate


def band_for(probability: float, bands: Bands, previous: Band | None = None) -> Band:
    """The band of ``probability`` given the band the instance was in (hysteresis, no dwell).

    With no previous band the ``enter`` thresholds alone decide.
    """
    high, moderate = _band_tests(probability, bands, -1 if previous is None else _ORDER[previous])
    return Band.HIGH if high else (Band.MODERATE if moderate else Band.LOW)


def band_codes(probabilities: np.ndarray, bands: Bands, previous: np.ndarray) -> np.ndarray:
    """:func:`band_for` of many scores at once, as codes 0 low, 1 moderate, 2 high (``previous`` -1: none)."""
    import numpy as np  # here, not at the top: `forewarn policy check` needs no numpy

    high, moderate = _band_tests(probabilities, bands, previous)
    return np.where(high, 2, np.where(moderate, 1, 0))


class BandState(PolicyModel):
    """The band an instance is in and since when."""

    band: Band
    since: UtcDatetime


class BandTracker(PolicyModel):
    """Band of every instance across cycles; persist it with ``model_dump`` / ``model_validate``."""

    bands: Bands = Field(default_factory=Bands)
    states: dict[str, BandState] = Field(default_factory=dict)

    def update(self, instance_id: str, probability: float, now: datetime) -> Band:
        """Record a new probability for an instance and return its band now (see :meth:`update_many`)."""
        state = self.states.get(instance_id)
        previous = state.band if state is not None else None
        return self._settle(instance_id, state, band_for(probability, self.bands, previous), now)

    def update_many(self, instance_ids: Sequence[str], probabilities: Sequence[float], now: datetime) -> list[Band]:
        """Record a new probability for each instance and return their bands now, the bands computed in bulk.

        Moving up a band is immediate; moving down waits until the instance has been ``min_dwell_minutes``
        in its band (:meth:`_settle`). An instance seen for the first time enters the band of its ``enter``
        thresholds.
        """
        if len(set(instance_ids)) != len(instance_ids):  # a repeated id sees its own first update
            return [self.update(i, p, now) for i, p in zip(instance_ids, probabilities, strict=True)]
        import numpy as np

        states = [self.states.get(instance_id) for instance_id in instance_ids]
        previous = np.array([-1 if st is None else _ORDER[st.band] for st in states], dtype=np.int64)
        wanted = band_codes(np.asarray(probabilities, dtype=float), self.bands, previous)
        out = [_BY_CODE[code] for code in wanted.tolist()]
        for row in np.flatnonzero(wanted != previous).tolist():
            out[row] = self._settle(instance_ids[row], states[row], out[row], now)
        return out

    def _settle(self, instance_id: str, state: BandState | None, wanted: Band, now: datetime) -> Band:
        """The dwell rule, written once: the band an instance with ``state`` is in once its score wants
        ``wanted``; up (or first sight) at once, down only after ``min_dwell_minutes`` in its band."""
        if state is not None and wanted == state.band:
            return wanted
        dwell = timedelta(minutes=self.bands.min_dwell_minutes)
        if state is not None and _ORDER[wanted] < _ORDER[state.band] and now - state.since < dwell:
            return state.band
        self.states[instance_id] = BandState(band=wanted, since=now)
        return wanted

    def forget(self, instance_ids: Sequence[str]) -> None:
        """Drop instances that left the fleet."""
        for instance_id in instance_ids:
            self.states.pop(instance_id, None)


def _holds(instance: Instance, held: Collection[str] | None) -> bool:
    """Whether the instance holds capacity back (cordon, scale-back, buffer) that Forewarn put there."""
    if held is not None and instance.instance_id not in held:
        return False
    return instance.state == InstanceState.CORDONED or scaled_back(instance.capacity_factor) or instance.reserved > 0.0


def _tags_match(wanted: Mapping[str, str], tags: Mapping[str, str]) -> bool:
    return all(key in tags and (value == "*" or tags[key] == value) for key, value in wanted.items())


def _may_match(match: Match, band: Band, model_fresh: bool) -> bool:
    """The checks of :func:`matches` that depend only on the band and the model's freshness."""
    if match.model_fresh is not None and match.model_fresh != model_fresh:
        return False
    if not model_fresh and match.model_fresh is None:
        return False
    return match.band is None or match.band == band


def _tasks_by_instance(tasks: Sequence[Task]) -> dict[str, list[Task]]:
    by_instance: dict[str, list[Task]] = {}
    for task in tasks:
        if task.instance_id is not None:
            by_instance.setdefault(task.instance_id, []).append(task)
    return by_instance


def matches(match: Match, band: Band, instance: Instance, tasks: Sequence[Task], model_fresh: bool) -> bool:
    """Whether every condition of ``match`` holds for this instance: :func:`_may_match`, then the instance's
    group, its tasks' workload kinds and its tags."""
    if not _may_match(match, band, model_fresh):
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
        stale: Collection[str] = (),
        held: Collection[str] | None = None,
    ) -> list[Decision]:
        """One decision per instance a rule (or the fallback) matched, in the order of ``instances``.

        Instances that are failed or terminated, or have no score while the model is in use, are skipped,
        except those in ``stale`` (their features are too old to score): the fallback decides them as if no
        model were in use. A ``release`` rule yields a decision only for an instance that holds something
        back (cordoned, scaled back or buffered) and, when ``held`` is given, was held by Forewarn.
        """
        fresh = model_fresh and bool(scores)
        latest: dict[str, RiskScore] = {}
        for score in scores:
            if score.instance_id not in latest or score.timestamp >= latest[score.instance_id].timestamp:
                latest[score.instance_id] = score
        live = [i for i in instances if i.state not in (InstanceState.FAILED, InstanceState.TERMINATED)]
        if fresh:
            late = set(stale)
            modelled = [i for i in live if i.instance_id in latest and i.instance_id not in late]
            by_fallback = [i for i in live if i.instance_id in late]
        else:
            modelled, by_fallback = [], live
        current: dict[str, RiskScore] = {i.instance_id: latest[i.instance_id] for i in modelled}
        ids = list(current)
        bands = dict(
            zip(ids, self.tracker.update_many(ids, [s.probability for s in current.values()], now), strict=True)
        )
        triggered: dict[str, list[str]] = {}
        for instance in by_fallback:
            bands[instance.instance_id], triggered[instance.instance_id] = self._static_band(
                instance.instance_id, features or {}
            )
        tables = {True: self._rule_table(True), False: self._rule_table(False)}
        by_instance = _tasks_by_instance(tasks) if any(r.match.workload_kinds for r in self.policy.rules) else {}
        pinned = self._pinned(tasks)
        decisions: list[Decision] = []
        self.last_bands = {}
        for instance in live:
            band = bands.get(instance.instance_id)
            if band is None:
                continue
            by_model = instance.instance_id in current
            own = by_instance.get(instance.instance_id, [])
            decision = self._first_rule(
                tables[by_model][band], band, instance, own, by_model, current.get(instance.instance_id)
            )
            if not by_model and decision is None and band is Band.HIGH:
                decision = self._fallback(instance, triggered[instance.instance_id])
            if decision is not None and decision.action is ActionType.RELEASE and not _holds(instance, held):
                decision = None
            self.last_bands[instance.instance_id] = band
            own_pinned = pinned.get(instance.instance_id, [])
            if decision is None:
                decision = self._opt_out_only(band, instance, own_pinned)
            if decision is not None:
                decisions.append(self._honour_opt_out(decision, instance, own_pinned))
        return decisions

    def _rule_table(self, fresh: bool) -> dict[Band, list[tuple[Rule, bool]]]:
        """Per band, the rules that may match it in order, each flagged simple when nothing else is checked
        (no groups, workload kinds or tags): the first simple one matches every instance of the band."""
        table: dict[Band, list[tuple[Rule, bool]]] = {}
        for band in Band:
            table[band] = [
                (rule, not (rule.match.groups or rule.match.workload_kinds or rule.match.tags))
                for rule in self.policy.rules
                if _may_match(rule.match, band, fresh)
            ]
        return table

    def _pinned(self, tasks: Sequence[Task]) -> dict[str, list[str]]:
        """Instance id -> ids of its tasks carrying the opt-out tag, in task order."""
        tag = self.policy.opt_out_tag
        pinned: dict[str, list[str]] = {}
        for task in tasks:
            if task.instance_id is not None and tag in task.tags:
                pinned.setdefault(task.instance_id, []).append(task.task_id)
        return pinned

    def _opt_out_only(self, band: Band, instance: Instance, pinned: Sequence[str]) -> Decision | None:
        """No rule matched, but opted-out work is there: say so, so that allocation never moves it."""
        tag = self.policy.opt_out_tag
        if tag not in instance.tags and not pinned:
            return None
        rule = OPT_OUT_RULE if tag in instance.tags else "opt-out-tasks"
        return Decision(instance_id=instance.instance_id, band=band, action=ActionType.NONE, rule=rule)

    def _first_rule(
        self,
        candidates: Sequence[tuple[Rule, bool]],
        band: Band,
        instance: Instance,
        tasks: Sequence[Task],
        fresh: bool,
        score: RiskScore | None,
    ) -> Decision | None:
        for rule, simple in candidates:
            if simple or matches(rule.match, band, instance, tasks, fresh):
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

    def _honour_opt_out(self, decision: Decision, instance: Instance, pinned: Sequence[str]) -> Decision:
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
        if pinned:
            decision.params["opt_out_task_ids"] = list(pinned)
        return decision
