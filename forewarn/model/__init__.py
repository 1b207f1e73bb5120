"""The failure model: labels, time splits, configuration, training, calibration, evaluation, scoring, persistence,
registry, explanations.

Terms:
    entity row: one (instance_id, event_timestamp) at which features are known and a score is wanted.
    horizon H: the look-ahead of a label or score; ``label_<H>m`` is 1 when the instance fails in (t, t+H].
    censored: the window (t, t+H] runs past the end of the data and no failure was seen in it, so the
        label is unknown (it would be 0 only if the data went on).
    calibrated probability: a score whose value matches the observed failure frequency of similar scores.
    champion race: XGBoost, the static rules and the logistic model judged on the same newest rows by PR-AUC
        with intervals over instances; the simplest that no other clearly beats serves
        (:mod:`forewarn.model.champion`). A baseline serves as a :class:`~forewarn.model.baseline_model.BaselineModel`.
"""
