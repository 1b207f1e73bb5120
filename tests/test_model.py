"""The failure model: labels, time split, training, calibration, explanations, evaluation, registry."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forewarn.errors import InputError, ModelUnavailable
from forewarn.model.calibrate import Calibrator
from forewarn.model.config import TrainConfig
from forewarn.model.evaluate import brier, choose_threshold, event_metrics, pr_auc, static_baseline
from forewarn.model.labels import make_labels
from forewarn.model.registry import ModelRegistry
from forewarn.model.scoring import TrainedModel
from forewarn.model.split import time_split
from forewarn.model.train import train_model

T0 = pd.Timestamp("2024-01-01T00:00Z")


def at(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def entities(instance: str, minutes: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"instance_id": instance, "event_timestamp": [at(m) for m in minutes]})


def fails(*events: tuple[str, int]) -> pd.DataFrame:
    return pd.DataFrame({"instance_id": [e[0] for e in events], "timestamp": [at(e[1]) for e in events]})


# --- labels ---------------------------------------------------------------------------------------------


def test_label_window_is_open_at_t_and_closed_at_t_plus_h() -> None:
    rows = entities("a", [0, 40, 100, 160, 200])
    out = make_labels(rows, fails(("a", 160), ("b", 50)), [60], data_end=at(1000))
    # failure at 160: rows at 100 (160 <= 100+60) label 1; row at 160 itself is not (window is (t, t+H]).
    assert out["label_60m"].tolist() == [0, 0, 1, 0, 0]
    assert not out["censored_60m"].any()


def test_label_per_instance_and_several_horizons() -> None:
    rows = pd.concat([entities("a", [0]), entities("b", [0])], ignore_index=True)
    out = make_labels(rows, fails(("a", 90)), [60, 120], data_end=at(1000))
    assert out["label_60m"].tolist() == [0, 0]
    assert out["label_120m"].tolist() == [1, 0]


def test_censoring_at_end_of_data_flags_or_drops() -> None:
    rows = entities("a", [0, 50, 80, 90])
    failures = fails(("a", 85))
    out = make_labels(rows, failures, [60], data_end=at(100))
    # 50 and 80 see the failure at 85 (known positives, not censored); 0 is known negative; 90 is censored.
    assert out["label_60m"].tolist() == [0, 1, 1, 0]
    assert out["censored_60m"].tolist() == [False, False, False, True]
    dropped = make_labels(rows, failures, [60], data_end=at(100), drop_censored=True)
    assert dropped["event_timestamp"].tolist() == [at(0), at(50), at(80)]


def test_rows_in_downtime_are_dropped() -> None:
    rows = entities("a", [0, 100, 110, 130])
    failures = fails(("a", 100)).assign(recovery_minutes=[20.0])
    out = make_labels(rows, failures, [60], data_end=at(1000))
    assert out["event_timestamp"].tolist() == [at(0), at(130)]


def test_labels_name_a_missing_column() -> None:
    with pytest.raises(InputError, match="event_timestamp"):
        make_labels(pd.DataFrame({"instance_id": ["a"]}), fails(), [60])


# --- split ----------------------------------------------------------------------------------------------


def test_time_split_never_mixes_time_and_purges_gap() -> None:
    frame = pd.concat([entities(f"i{k}", list(range(0, 1000, 10))) for k in range(3)], ignore_index=True)
    frame = frame.sample(frac=1.0, random_state=1)  # the input order must not matter
    train, valid, test = time_split(frame, gap=pd.Timedelta(minutes=30))
    assert train["event_timestamp"].max() + pd.Timedelta(minutes=30) <= valid["event_timestamp"].min()
    assert valid["event_timestamp"].max() + pd.Timedelta(minutes=30) <= test["event_timestamp"].min()
    assert 0.5 < len(train) / len(frame) < 0.6
    assert len(test) / len(frame) == pytest.approx(0.2, abs=0.02)


def test_time_split_refuses_bad_fractions_and_too_few_times() -> None:
    frame = entities("a", [0, 10])
    with pytest.raises(InputError, match="fractions"):
        time_split(frame, fractions=(0.5, 0.6))
    with pytest.raises(InputError, match="empty"):
        time_split(frame, fractions=(0.4, 0.3, 0.3))


# --- calibration and metrics ----------------------------------------------------------------------------


def test_isotonic_calibration_is_monotone_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    raw = rng.random(2000)
    y = (rng.random(2000) < raw**2).astype(float)  # true probability is raw squared
    calibrator = Calibrator.fit(raw, y)
    grid = np.linspace(0, 1, 50)
    mapped = calibrator.transform(grid)
    assert np.all(np.diff(mapped) >= -1e-12)
    assert brier(y, calibrator.transform(raw)) < brier(y, raw)
    again = Calibrator.model_validate_json(calibrator.model_dump_json())
    assert np.allclose(again.transform(grid), mapped)
    platt = Calibrator.fit(raw, y, method="platt")
    assert 0.0 <= platt.transform(np.array([0.5]))[0] <= 1.0


def test_pr_auc_and_threshold_on_known_cases() -> None:
    assert pr_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx((1 + 2 / 3) / 2)
    assert pr_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    y, p = np.array([0, 0, 1, 1, 0]), np.array([0.1, 0.2, 0.8, 0.9, 0.85])
    assert choose_threshold(y, p) == pytest.approx(0.8)
    assert choose_threshold(y, p, min_precision=1.0) == pytest.approx(0.9)


# --- training -------------------------------------------------------------------------------------------


def planted_frame(seed: int = 0, n_instances: int = 30, steps: int = 300) -> pd.DataFrame:
    """Random failures; the feature 'stress' rises in the hour before each one; two noise features."""
    rng = np.random.default_rng(seed)
    minutes = list(range(0, steps * 10, 10))
    rows = pd.concat([entities(f"vm{k}", minutes) for k in range(n_instances)], ignore_index=True)
    picks = rng.random(len(rows)) < 0.01
    failures = rows.loc[picks, ["instance_id", "event_timestamp"]].rename(columns={"event_timestamp": "timestamp"})
    frame = make_labels(rows, failures, [60], drop_censored=True)
    frame["noise_a"] = rng.normal(size=len(frame))
    frame["noise_b"] = rng.normal(size=len(frame))
    frame["stress"] = rng.normal(size=len(frame)) + 2.0 * frame["label_60m"]
    frame.loc[frame.sample(frac=0.05, random_state=seed).index, "noise_b"] = np.nan  # NaN is allowed
    return frame


FEATURES = ["noise_a", "noise_b", "stress"]


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    return train_model(planted_frame(), FEATURES, "label_60m", TrainConfig(max_rounds=200))


def test_training_finds_the_planted_signal_and_calibrates(trained: TrainedModel) -> None:
    metrics = trained.metrics
    assert metrics["pr_auc"] > 3 * metrics["prevalence"]
    assert metrics["brier"] < metrics["brier_constant"]
    assert metrics["n_train"] > metrics["n_test"] > 0
    assert 0.0 < trained.threshold < 1.0


def test_predictions_are_probabilities_and_explanations_name_the_planted_feature(trained: TrainedModel) -> None:
    frame = planted_frame(seed=5, n_instances=5)
    p = trained.predict_proba(frame)
    assert p.shape == (len(frame),) and np.all((p >= 0) & (p <= 1))
    risky = frame[frame["label_60m"] == 1].head(10)
    explanations = trained.explain(risky, top_k=2)
    assert all(len(e) == 2 for e in explanations)
    assert sum(e[0].feature == "stress" for e in explanations) >= 9
    scores = trained.score(risky)
    assert scores[0].model_version == trained.version and scores[0].horizon_minutes == 60
    assert scores[0].timestamp == risky["event_timestamp"].iloc[0].to_pydatetime()


def test_prediction_names_a_missing_feature(trained: TrainedModel) -> None:
    with pytest.raises(InputError, match="stress"):
        trained.predict_proba(pd.DataFrame({"noise_a": [0.0], "noise_b": [0.0]}))


def test_training_leaves_out_censored_rows() -> None:
    frame = planted_frame(n_instances=10, steps=200).assign(censored_60m=False)
    frame.loc[frame.index[::2], "censored_60m"] = True
    model = train_model(frame, FEATURES, "label_60m", TrainConfig(max_rounds=20))
    total = model.metrics["n_train"] + model.metrics["n_validation"] + model.metrics["n_test"]
    assert total <= len(frame) // 2


def test_training_without_failures_says_so() -> None:
    frame = planted_frame(n_instances=3, steps=100).assign(label_60m=0)
    with pytest.raises(InputError, match="no positive label"):
        train_model(frame, FEATURES, "label_60m", TrainConfig())


# --- event-level evaluation -----------------------------------------------------------------------------


def test_event_metrics_on_a_hand_made_case() -> None:
    # H = 60. Instance a fails at 300: alerts at 250-270 (one run) catch it (lead 50). Instance b never fails:
    # alerts at 100, 110 (one run) and 200 (another run) are two false alarms. Instance c fails at 500
    # without an alert before it: missed. Samples every 10 minutes from 0 to 590.
    minutes = list(range(0, 600, 10))
    frame = pd.concat([entities(k, minutes) for k in ("a", "b", "c")], ignore_index=True)
    alerting = {("a", 250), ("a", 260), ("a", 270), ("b", 100), ("b", 110), ("b", 200)}
    frame["probability"] = [
        0.9 if (i, int((t - T0).total_seconds() // 60)) in alerting else 0.1
        for i, t in zip(frame["instance_id"], frame["event_timestamp"], strict=True)
    ]
    result = event_metrics(frame, fails(("a", 300), ("c", 500), ("a", 5000)), threshold=0.5, horizon_minutes=60)
    assert result["n_failures"] == 2  # the failure at 5000 is past the scored period
    assert result["n_caught"] == 1
    assert result["event_recall"] == pytest.approx(0.5)
    assert result["median_lead_minutes"] == pytest.approx(50.0)
    assert result["n_false_alarms"] == 2
    assert result["alert_precision"] == pytest.approx(1 / 3)
    assert 0.0 < result["pr_auc"] < 1.0 and 0.0 < result["brier"] < 1.0

    baseline = static_baseline(frame.assign(memory=frame["probability"]), {"memory": 0.5})
    same = event_metrics(baseline, fails(("a", 300), ("c", 500)), threshold=0.5, horizon_minutes=60)
    assert same["n_caught"] == 1 and same["n_false_alarms"] == 2


def test_static_baseline_names_an_unknown_feature() -> None:
    with pytest.raises(InputError, match="memory_mean"):
        static_baseline(entities("a", [0]).assign(cpu=0.5), {"memory_mean": 0.9})


# --- registry -------------------------------------------------------------------------------------------

WINDOW = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC))


def test_registry_round_trip(tmp_path: Path, trained: TrainedModel) -> None:
    registry = ModelRegistry(tmp_path)
    assert registry.current() is None
    card = registry.register(trained, data_window=WINDOW, validation={"success": True})
    assert card.status == "registered" and card.features == FEATURES and card.kind == "xgboost"
    registry.promote(trained.version)
    loaded = registry.current()
    assert loaded is not None and loaded.version == trained.version
    frame = planted_frame(seed=7, n_instances=3)
    assert np.allclose(loaded.predict_proba(frame), trained.predict_proba(frame))
    assert loaded.explain(frame.head(1))[0][0].feature == trained.explain(frame.head(1))[0][0].feature

    other = TrainedModel(
        trained.booster, trained.calibrator, feature_names=FEATURES, horizon_minutes=60, version="other-1"
    )
    registry.register(other, data_window=WINDOW, validation={"success": True})
    registry.promote("other-1")
    assert registry.card(trained.version).status == "retired"
    assert [c.version for c in registry.list()] == [trained.version, "other-1"]


def test_registry_never_promotes_a_rejected_model(tmp_path: Path, trained: TrainedModel) -> None:
    registry = ModelRegistry(tmp_path)
    card = registry.register(trained, data_window=WINDOW, validation={"success": False, "failures": ["x"]})
    assert card.status == "rejected"
    with pytest.raises(ModelUnavailable, match="rejected"):
        registry.promote(trained.version)
    assert registry.current() is None
    with pytest.raises(ModelUnavailable, match=trained.version):
        registry.card("nope")


# --- real data ------------------------------------------------------------------------------------------

BACKBLAZE = Path(__file__).resolve().parents[2] / "shared/data/backblaze_2019_subsets"


@pytest.mark.skipif(not BACKBLAZE.exists(), reason=f"real data folder {BACKBLAZE} is absent")
def test_static_smart_baseline_on_backblaze_drives() -> None:
    """The last 10 days of every TOSHIBA MQ01ABF050 drive; a drive failed on its last day when flagged."""
    raw = pd.read_csv(BACKBLAZE / "TOSHIBA MQ01ABF050_last_10_day_all_q_raw.csv")
    frame = raw.rename(columns={"serial_number": "instance_id"}).assign(
        event_timestamp=pd.to_datetime(raw["date"], utc=True)
    )
    last = frame.groupby("instance_id")["event_timestamp"].max()
    failed = frame.groupby("instance_id")["failure"].max() == 1
    failures = pd.DataFrame(
        {"instance_id": last[failed].index, "timestamp": last[failed].to_numpy() + pd.Timedelta(hours=23)}
    )
    baseline = static_baseline(frame, {"smart_197_raw": 0.0})  # any pending sector
    result = event_metrics(baseline, failures, threshold=0.5, horizon_minutes=3 * 1440)
    assert result["n_failures"] == 79  # 78 drives with 10 rows + 1 with 5, per SOURCE.txt
    assert result["event_recall"] > 0.5
    assert result["alert_precision"] > 5 * result["prevalence"]


# --- feedback -------------------------------------------------------------------------------------------


def test_drained_instances_are_labelled_by_what_happened_next() -> None:
    from forewarn.model.feedback import feedback_labels, journal_actions
    from forewarn.schemas import Action, ActionState, ActionType, Plan, PolicyMode

    def plan(*actions: tuple[str, ActionType, ActionState]) -> Plan:
        return Plan(
            policy="p",
            mode=PolicyMode.AUTO,
            created_at=at(100).to_pydatetime(),
            actions=[Action(type=t, instance_id=i, state=s) for i, t, s in actions],
        )

    ok, failed = ActionState.SUCCEEDED, ActionState.FAILED
    actions = journal_actions(
        [
            plan(
                ("a", ActionType.MIGRATE, ok),
                ("b", ActionType.CORDON, ok),
                ("c", ActionType.MIGRATE, ok),
                ("d", ActionType.MIGRATE, failed),
            )
        ]
    )
    assert list(actions["timestamp"].unique()) == [at(100)]
    rows = pd.concat(
        [
            entities("a", list(range(0, 150, 10))),
            entities("b", list(range(0, 1001, 10))),
            entities("c", list(range(0, 121, 10))),
            entities("d", list(range(0, 121, 10))),
        ],
        ignore_index=True,
    )
    out = make_labels(rows, fails(("a", 150)), [60], data_end=at(1000))  # what labels say without feedback
    got = feedback_labels(rows, fails(("a", 150)), actions, [60], data_end=at(1000)).set_index(
        ["instance_id", "event_timestamp"]
    )

    def row(instance: str, minute: int) -> pd.Series:
        return got.loc[(instance, at(minute))]

    # a failed 50 minutes after its work was moved: still a positive, not forgiven by the migration.
    assert row("a", 100)["label_60m"] == 1 and row("a", 100)["drain_outcome"] == "failed"
    # b was watched long after the drain and stayed up: a true negative.
    assert row("b", 100)["label_60m"] == 0 and not row("b", 100)["censored_60m"]
    assert row("b", 100)["drain_outcome"] == "healthy"
    # c went silent at 120 (retired): windows reaching past 120 are unknown, kept and flagged, not negatives.
    assert row("c", 60)["drain_outcome"] == "healthy" and not row("c", 60)["censored_60m"]
    assert row("c", 70)["drain_outcome"] == "unknown" and row("c", 70)["censored_60m"]
    assert row("c", 70)["label_60m"] == 0 and len(got) == len(out)
    # d's migration failed: nothing changed for it, its labels are the plain ones.
    assert (got.xs("d")["drain_outcome"] == "").all() and not got.xs("d")["censored_60m"].any()
    # rows before any drain window are untouched.
    assert row("a", 0)["drain_outcome"] == "" and row("b", 30)["drain_outcome"] == ""


def test_roc_auc_on_known_cases() -> None:
    from forewarn.model.evaluate import roc_auc

    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(1.0)
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(0.0)
    assert np.isnan(roc_auc(np.array([0, 0]), np.array([0.1, 0.2])))


def test_event_metrics_with_no_alert_at_all() -> None:
    """A threshold above every score (a zero alert budget) catches nothing and raises nothing."""
    times = pd.date_range("2024-01-01", periods=20, freq="5min", tz="UTC")
    scores = pd.DataFrame({"instance_id": "a", "event_timestamp": times, "probability": np.linspace(0, 1, 20)})
    failures = pd.DataFrame({"instance_id": ["a"], "timestamp": [times[-3]]})
    result = event_metrics(scores, failures, threshold=float("inf"), horizon_minutes=30)
    assert result["event_recall"] == 0.0 and result["n_alerts"] == 0 and result["median_lead_minutes"] is None
