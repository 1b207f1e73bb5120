"""The policy engine: bands with hysteresis and dwell, first-match rules, opt-out, and the fallback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from forewarn.policy import BandTracker, PolicyEngine, load_policy_text
from forewarn.policy.schema import Bands
from forewarn.schemas import ActionType, Band, Instance, RiskScore, Task

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

POLICY = """\
name: engine-test
mode: auto
bands:
  high: {enter: 0.6, exit: 0.45}
  moderate: {enter: 0.3, exit: 0.2}
  min-dwell-minutes: 10
rules:
  - name: databases-by-hand
    match: {band: high, workload-kinds: [database]}
    action: {type: notify, message: by hand}
  - name: evacuate-prod
    match: {band: high, tags: {env: prod}}
    action: {type: migrate, split: {enabled: true, min-chunk: 0.5}}
  - name: evacuate-any
    match: {band: high}
    action: {type: cordon, drain: true}
  - name: ease
    match: {band: moderate, groups: [web]}
    action: {type: scale-back, factor: 0.6}
  - name: stale-web
    match: {band: high, model-fresh: false, groups: [web]}
    action: {type: notify}
fallback:
  static-thresholds: {memory_mean_1h: 0.95, error_count_sum_1h: 50}
  action: cordon
"""


def _score(instance_id: str, probability: float, at: datetime = T0) -> RiskScore:
    return RiskScore(
        instance_id=instance_id, timestamp=at, probability=probability, horizon_minutes=60, model_version="m1"
    )


def _engine() -> PolicyEngine:
    return PolicyEngine(load_policy_text(POLICY))


def test_hysteresis_needs_exit_threshold_to_leave() -> None:
    tracker = BandTracker(bands=Bands(min_dwell_minutes=0))
    assert tracker.update("i", 0.5, T0) is Band.MODERATE  # first sight: enter thresholds
    assert tracker.update("i", 0.61, T0) is Band.HIGH
    assert tracker.update("i", 0.5, T0) is Band.HIGH  # above high.exit 0.45: stays
    assert tracker.update("i", 0.44, T0) is Band.MODERATE
    assert tracker.update("i", 0.25, T0) is Band.MODERATE  # above moderate.exit 0.2
    assert tracker.update("i", 0.19, T0) is Band.LOW
    assert tracker.update("i", 0.29, T0) is Band.LOW  # below moderate.enter
    assert tracker.update("j", 0.6, T0) is Band.HIGH  # enter is inclusive


def test_min_dwell_delays_moving_down_but_not_up() -> None:
    tracker = BandTracker(bands=Bands(min_dwell_minutes=10))
    assert tracker.update("i", 0.1, T0) is Band.LOW
    assert tracker.update("i", 0.9, T0 + timedelta(minutes=1)) is Band.HIGH  # up at once
    assert tracker.update("i", 0.1, T0 + timedelta(minutes=5)) is Band.HIGH  # only 4 minutes in high
    assert tracker.update("i", 0.1, T0 + timedelta(minutes=11)) is Band.LOW


def test_tracker_round_trips_through_model_dump() -> None:
    tracker = BandTracker(bands=Bands(min_dwell_minutes=10))
    tracker.update("i", 0.9, T0)
    restored = BandTracker.model_validate(tracker.model_dump(mode="json"))
    assert restored.update("i", 0.1, T0 + timedelta(minutes=5)) is Band.HIGH
    assert restored.states["i"].since == T0


def test_first_matching_rule_decides_with_params() -> None:
    instances = [
        Instance(instance_id="db", tags={"env": "prod"}),
        Instance(instance_id="prod", tags={"env": "prod"}),
        Instance(instance_id="dev", tags={"env": "dev"}),
        Instance(instance_id="web", group="web"),
        Instance(instance_id="quiet", group="batch"),
        Instance(instance_id="unscored"),
    ]
    tasks = [Task(task_id="t1", instance_id="db", kind="database"), Task(task_id="t2", instance_id="prod")]
    scores = [
        _score("db", 0.9),
        _score("prod", 0.7),
        _score("dev", 0.65),
        _score("web", 0.4),
        _score("quiet", 0.4),
        _score("prod", 0.1, T0 - timedelta(minutes=5)),
    ]
    engine = _engine()
    decisions = {d.instance_id: d for d in engine.decide(scores, instances, tasks, now=T0)}
    assert set(decisions) == {"db", "prod", "dev", "web"}  # quiet: moderate but not web; unscored: no score
    assert engine.last_bands["quiet"] is Band.MODERATE and "unscored" not in engine.last_bands
    assert (decisions["db"].action, decisions["db"].rule) == (ActionType.NOTIFY, "databases-by-hand")
    assert decisions["prod"].action is ActionType.MIGRATE and decisions["prod"].rule == "evacuate-prod"
    assert decisions["prod"].params == {"split": {"enabled": True, "min_chunk": 0.5}}
    assert decisions["prod"].probability == 0.7  # the latest score counts
    assert decisions["dev"].params == {"drain": True}
    assert decisions["web"].band is Band.MODERATE and decisions["web"].params["factor"] == 0.6


def test_opt_out_tag_on_instance_and_task() -> None:
    instances = [
        Instance(instance_id="keep", tags={"env": "prod", "forewarn/opt-out": "yes"}),
        Instance(instance_id="mixed", tags={"env": "prod"}),
    ]
    tasks = [
        Task(task_id="pinned", instance_id="mixed", tags={"forewarn/opt-out": ""}),
        Task(task_id="free", instance_id="mixed"),
    ]
    decisions = {
        d.instance_id: d
        for d in _engine().decide([_score("keep", 0.9), _score("mixed", 0.9)], instances, tasks, now=T0)
    }
    assert decisions["keep"].action is ActionType.NONE and decisions["keep"].rule == "opt-out"
    assert decisions["keep"].params["wanted_rule"] == "evacuate-prod"
    assert decisions["mixed"].action is ActionType.MIGRATE
    assert decisions["mixed"].params["opt_out_task_ids"] == ["pinned"]


def test_fallback_when_model_stale_uses_static_thresholds() -> None:
    instances = [Instance(instance_id="hot"), Instance(instance_id="web", group="web"), Instance(instance_id="fine")]
    features = {
        "hot": {"memory_mean_1h": 0.97},
        "web": {"error_count_sum_1h": 80.0},
        "fine": {"memory_mean_1h": 0.5, "error_count_sum_1h": 3.0},
    }
    scores = [_score("hot", 0.01), _score("web", 0.01), _score("fine", 0.99)]
    decisions = {
        d.instance_id: d for d in _engine().decide(scores, instances, [], now=T0, model_fresh=False, features=features)
    }
    assert set(decisions) == {"hot", "web"}  # the scores are ignored; 'fine' is under every threshold
    assert decisions["hot"].rule == "fallback" and decisions["hot"].action is ActionType.CORDON
    assert decisions["hot"].params["triggered"] == ["memory_mean_1h=0.97>=0.95"]
    assert decisions["web"].rule == "stale-web" and decisions["web"].action is ActionType.NOTIFY


def test_no_scores_means_fallback_and_fresh_rules_never_match_it() -> None:
    decisions = _engine().decide(
        [], [Instance(instance_id="a", tags={"env": "prod"})], [], now=T0, features={"a": {"memory_mean_1h": 1.0}}
    )
    assert [(d.rule, d.action) for d in decisions] == [("fallback", ActionType.CORDON)]


def test_engine_keeps_band_state_between_cycles() -> None:
    engine = _engine()
    web = [Instance(instance_id="w", group="web")]
    assert engine.decide([_score("w", 0.9)], web, [], now=T0)[0].band is Band.HIGH
    later = T0 + timedelta(minutes=3)
    assert engine.decide([_score("w", 0.35, later)], web, [], now=later)[0].band is Band.HIGH  # dwell
    much_later = T0 + timedelta(minutes=15)
    decision = engine.decide([_score("w", 0.35, much_later)], web, [], now=much_later)[0]
    assert decision.band is Band.MODERATE and decision.rule == "ease"
