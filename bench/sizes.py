"""Scenario sizes: `full` is what the targets are stated for, `quick` fits in minutes,
`tiny` only proves that a scenario runs and reports (the smoke test)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    name: str
    heartbeat_agents: int
    heartbeat_rate: int
    heartbeat_seconds: float
    failover_agents: int
    failover_dying: int
    tasks: int
    command_samples: int
    rebuild_events: int
    memory_agents: int
    api_seconds: int
    # How far above the offered rate the saturation search may go, as a factor: only
    # bounds the run's length (tiny proves the search runs, in two steps).
    saturation_ceiling: float = 32.0
    # Flow control (bench/scenarios/flow.py), the numbers by default: lifecycles
    # per run (runs with and without limits alternate, `flow_pairs` of each), keys, the
    # waiting tasks and decisions of the in-process placement measure, a burst's
    # submissions against its admission bound, and the two submitters' backlogs.
    flow_tasks: int = 5000
    flow_pairs: int = 2
    flow_keys: int = 1000
    flow_waiting: int = 100_000
    flow_decisions: int = 1000
    flow_burst: int = 1_000_000
    flow_bound: int = 100_000
    flow_large: int = 10_000
    flow_small: int = 10
    # The TypeScript SDK's agent against the Python one (bench/scenarios/sdk_ts.py): echo
    # tasks per run, and runs of each (Python and TypeScript alternate, many short runs).
    sdk_ts_tasks: int = 1000
    sdk_ts_pairs: int = 20
    # Leader succession (bench/scenarios/ha.py): leaders SIGKILLed, at the lease TTL of
    # the default settings; samples of the bare KV lease's takeover beside it.
    ha_kills: int = 20
    ha_lease_ttl: float = 5.0
    ha_baseline_samples: int = 20


# Full size: 20,000 agents beating once a second, the offered 20,000/s (with 2,000 each
# beat ten to eighty times a second, and a beat superseded before intake read it, the
# stream keeping the latest per agent, counted as lost).
FULL = Size("full", 20_000, 20_000, 30.0, 1000, 100, 5000, 2000, 1_000_000, 100_000, 10)
QUICK = Size("quick", 1000, 20_000, 8.0, 300, 30, 1000, 500, 50_000, 10_000, 5,
             flow_tasks=2000, flow_decisions=300, flow_burst=100_000, flow_bound=20_000,
             flow_large=2000, sdk_ts_tasks=400, sdk_ts_pairs=12, ha_kills=8,
             ha_baseline_samples=8)
TINY = Size("tiny", 20, 500, 1.0, 20, 4, 40, 20, 300, 200, 1, saturation_ceiling=0.75,
            flow_tasks=40, flow_pairs=1, flow_keys=20, flow_waiting=2000, flow_decisions=20,
            flow_burst=600, flow_bound=200, flow_large=100, flow_small=5,
            sdk_ts_tasks=40, sdk_ts_pairs=1, ha_kills=2, ha_lease_ttl=1.0,
            ha_baseline_samples=2)
SIZES = {s.name: s for s in (FULL, QUICK, TINY)}
