from __future__ import annotations

import pytest

from simulator import config

from .conftest import HERE, ROOT


@pytest.mark.parametrize("path", sorted((ROOT / "simulator" / "configs").glob("*.yaml")) + [HERE / "golden" / "small.yaml"],
                         ids=lambda p: p.name)
def test_load_accepts_shipped_config(path):
    cfg = config.load(path)
    assert cfg.buyers.arrivals_per_day > 0


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "buyers": {"arrivals_per_day": 0}}, "buyers.arrivals_per_day: must be > 0"),
    ({"name": "x", "buyers": {"arrivals_per_day": 5, "confirm_probability": 1.5}},
     "buyers.confirm_probability: must be <= 1"),
    ({"name": "x", "buyers": {"arrivals_per_day": 5}, "lightning": {"channels": -1}}, "lightning.channels: must be > 0"),
    ({"name": "x", "buyers": {"arrivals_per_day": 5}, "blocks": {"release_tx_min_vb": 200}},
     "blocks.release_tx_max_vb: must be >= release_tx_min_vb"),
    ({"name": "x", "buyers": {"arrivals_per_day": 5, "hourly_profile": [1, 2]}}, "buyers.hourly_profile: needs 24"),
    ({"name": "x", "buyers": {"arrivals_per_day": 5, "speed": 3}}, "buyers.speed: is not a known field"),
    ({"name": "x"}, "buyers: is required"),
    ({"name": "x", "buyers": {"arrivals_per_day": 5}, "run": {"duration_days": float("inf")}},
     "run.duration_days: Input should be a finite number"),  # a run that would never end
])
def test_parse_rejects_bad_field_naming_it(data, message):
    with pytest.raises(config.SimConfigError) as err:
        config.parse(data)
    assert str(err.value).startswith(message)


def test_load_rejects_missing_file(tmp_path):
    with pytest.raises(config.SimConfigError, match="no simulator config"):
        config.load(tmp_path / "nope.yaml")


def test_load_finds_shipped_config_by_name_and_lists_them_when_unknown(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the name is not a file here: the package's configs answer
    assert config.load("year-10k").name == config.load(ROOT / "simulator" / "configs" / "year-10k.yaml").name
    with pytest.raises(config.SimConfigError, match=r"no simulator config at nope; shipped: .*year-10k"):
        config.load("nope")


def test_parse_freezes_sections():
    cfg = config.parse({"name": "x", "buyers": {"arrivals_per_day": 5}})
    with pytest.raises(Exception):
        cfg.buyers.arrivals_per_day = 6  # type: ignore[misc]


def test_hold_cltv_matches_app_rule():
    from reference_app.config import Settings
    from reference_app.services.transitions import hold_cltv_blocks

    w = config.parse({"name": "x", "buyers": {"arrivals_per_day": 5}}).windows
    settings = Settings(ship_window_blocks=w.ship_window_blocks, delivery_window_blocks=w.delivery_window_blocks,
                        dispute_window_blocks=w.dispute_window_blocks, speedup_factor=w.speedup_factor,
                        guardian_margin_blocks=w.guardian_margin_blocks,
                        hold_expiry_delta_blocks=w.hold_expiry_delta_blocks)
    assert config.hold_cltv_blocks(w) == hold_cltv_blocks(settings)
