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
