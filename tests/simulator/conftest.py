from __future__ import annotations

from pathlib import Path

import pytest

from simulator import config

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def small(**overrides) -> config.SimConfig:
    """A quick config: a few days of a small marketplace, with sections overridden."""
    data = {"name": "unit", "buyers": {"arrivals_per_day": 800}, "run": {"seed": 3, "duration_days": 4}}
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values}
    return config.parse(data)


@pytest.fixture
def golden_config() -> config.SimConfig:
    return config.load(HERE / "golden" / "small.yaml")
