from __future__ import annotations

import json

from reports import capacity
from simulator import model

from .conftest import small


def test_write_produces_html_with_plots_and_json(tmp_path):
    cfg = small(run={"duration_days": 2})
    main, verdict, _timing = model.capacity(cfg)
    doc = {"mode": "model", "config": {"name": cfg.name}, "summary": main.summary, "verdict": verdict,
           "performance": {"events": main.events, "wall_s": 0}}
    paths = capacity.write(tmp_path, doc, main.recorder.series, main.recorder.channel_slots)
    data = json.loads(open(paths["json"]).read())
    assert data["schema"] == capacity.SCHEMA
    assert data["verdict"]["binds_first"] == verdict["binds_first"]
    assert len(data["series"]["t_s"]) == len(main.recorder.series["t_s"])
    page = open(paths["html"]).read()
    assert page.count("data:image/png;base64,") == 6
    assert "Assumptions" in page and verdict["text"] in page


def test_a_sweep_is_a_table_of_failed_fundings_by_cause_and_a_picture_beside_the_verdict():
    row = {"multiplier": 2.0, "days": 5.0, "orders": 1000, "success_rate": 0.94,
           "failed_funding": {"htlc_slots": 0, "channel_liquidity": 77, "cltv_budget": 0},
           "first_failure_day": {"htlc_slots": None, "channel_liquidity": 2.68, "cltv_budget": None}}
    calm = {**row, "multiplier": 1.0, "failed_funding": {"channel_liquidity": 0},
            "first_failure_day": {"channel_liquidity": None}}
    cfg = small(run={"duration_days": 1})
    main, verdict, _timing = model.capacity(cfg)
    verdict = {**verdict, "sweep": [calm, row]}
    doc = {"mode": "model", "config": {"name": cfg.name}, "summary": main.summary, "verdict": verdict,
           "performance": {"events": main.events, "wall_s": 0}}
    images = capacity.plots(main.recorder.series, main.recorder.channel_slots, main.summary, verdict)
    page = capacity.html_report({**doc, "assumptions": []}, images)
    assert "<td>77 (7.7 %): channel_liquidity 77</td>" in page and "<td>channel_liquidity day 2.68</td>" in page
    assert "<td>0</td>" in page and "<td>none</td>" in page  # the calm point
    assert "alt='sweep'" in page and len(images["sweep"]) > 1000
    assert "sweep" not in capacity.plots(main.recorder.series, main.recorder.channel_slots, main.summary,
                                         {**verdict, "sweep": [row]})  # one point draws no line
