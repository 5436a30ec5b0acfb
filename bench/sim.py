"""The simulator's speed: simpy events our model processes a second, beside a raw simpy loop.

``events_per_s`` counts the events the model's environment actually processed (event ids
it issued less those still queued), over the event loop's wall time; the actors' bulk
draws happen inside that loop and are included. ``raw_simpy_events_per_s`` is a trivial
``yield env.timeout(1)`` loop processing the same number of events in the same process,
under the same conditions (cyclic GC paused for both). ``ratio`` is the first over the second.

    python -m bench.sim --days 30
"""

from __future__ import annotations

import argparse
import json
import os
import time

import simpy

from simulator import config as sim_config
from simulator import model

DEFAULT_CONFIG = "simulator/configs/year-10k.yaml"


def raw_simpy_events_per_s(events: int) -> float:
    env = simpy.Environment()

    def loop(env: simpy.Environment, n: int):
        for _ in range(n):
            yield env.timeout(1)

    env.process(loop(env, events - 2))  # the process's start and end are events too
    started = time.perf_counter()
    with model.gc_paused():
        env.run()
    elapsed = time.perf_counter() - started
    return model.processed_events(env) / elapsed


def run(config_path: str = DEFAULT_CONFIG, days: float = 30.0, repeat: int = 1) -> dict:
    cfg = sim_config.load(config_path)
    runs = []
    for _ in range(repeat):
        r = model.run(cfg, days=days)
        raw = raw_simpy_events_per_s(r.events)
        eps = r.events / r.loop_s
        runs.append({"events": r.events, "loop_s": round(r.loop_s, 3), "events_per_s": round(eps),
                     "raw_simpy_events_per_s": round(raw), "ratio": round(eps / raw, 3),
                     "orders_per_s": round(r.summary["orders"]["arrivals"] / r.loop_s)})
    best = max(runs, key=lambda x: x["ratio"]) if repeat > 1 else runs[0]
    return {"events_per_s": best["events_per_s"], "raw_simpy_events_per_s": best["raw_simpy_events_per_s"],
            "ratio": best["ratio"], "orders_per_s": best["orders_per_s"],
            "config": config_path, "days": days, "events": best["events"], "runs": runs,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--days", type=float, default=30.0)
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args()
    print(json.dumps(run(a.config, a.days, a.repeat), indent=2))


if __name__ == "__main__":
    main()
