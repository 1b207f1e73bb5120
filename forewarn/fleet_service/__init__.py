"""``forewarn fleet serve``: the simulator as a long-running fleet with a persistent state and an HTTP API.

Terms:
    fleet time: the fleet's own clock, ``anchor_fleet + (wall - anchor_wall) * speed``; a pure function of the
        wall clock once the anchor is saved, so a restart continues the same timeline and what happened while
        the service was down is still generated (deterministically) and applied.
    origin: where the fleet's timeline begins, ``history_days`` before the fleet time of the first start, so a
        model can be trained at once.
    chunk: one simulated day of the timeline (telemetry, errors, failures, workloads), simulated with a seed
        derived from the fleet's seed and the chunk's index and cached as files under the state directory.
        Only what is at or before fleet now is revealed.
    cursor: the fleet time up to which the chunks' events (failures, repairs, task arrivals and ends) have been
        applied to the simulated cloud; saved in the same atomic write as the cloud.

Modules: :mod:`.config` (the fleet and its clock), :mod:`.chunks` (the timeline), :mod:`.exposition`
(Prometheus text), :mod:`.service` (the fleet and its cloud under a lock), :mod:`.http` (the API on loopback),
:mod:`.wire` (JSON both ways), :mod:`.client` (the clock and the ``fleet`` source over the API).
"""
