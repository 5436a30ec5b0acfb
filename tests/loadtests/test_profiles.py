"""Load shapes are data: shipped profiles parse, bad ones fail naming the field."""

from __future__ import annotations

import pytest

from loadtests.profiles import ProfileError, load_profile, parse_duration, parse_profile, shipped


@pytest.mark.parametrize("name", ["steady", "ramp", "spike", "soak"])
def test_load_profile_shipped(name):
    profile = load_profile(name)
    assert profile.name == name
    assert profile.stages[-1].until == 1.0


def test_plan_scales_stages_to_users_and_duration():
    profile = parse_profile({"name": "p", "spawn_rate": 3, "fixed": {"seller": 1},
                             "stages": [{"until": 0.5, "users": 0.5}, {"until": 1, "users": 1, "spawn_rate": 9}]})
    assert profile.plan(users=10, duration_s=60, processes=2) == [
        {"end_s": 30.0, "users": 2 + 5, "spawn_rate": 3},
        {"end_s": 60.0, "users": 2 + 10, "spawn_rate": 9},
    ]


@pytest.mark.parametrize("data, message", [
    ({"name": "p", "stages": []}, "stages: List should have at least 1 item"),
    ({"name": "p", "stages": [{"until": 0.5, "users": 1}]}, "the last stage must end the run"),
    ({"name": "p", "stages": [{"until": 1, "users": 1}, {"until": 0.5, "users": 1}]}, "must strictly increase"),
    ({"name": "p", "stages": [{"until": 1, "users": 1, "ramp": 2}]}, "stages.0.ramp: Extra inputs"),
    ({"name": "p", "mix": {"whale": 1}, "stages": [{"until": 1, "users": 1}]}, "unknown user classes ['whale']"),
    ({"name": "p", "default_duration": "soon", "stages": [{"until": 1, "users": 1}]}, "'soon'"),
])
def test_parse_profile_rejects_bad_input(data, message):
    with pytest.raises(ProfileError) as err:
        parse_profile(data, "bad.yaml")
    assert str(err.value).startswith("bad.yaml: ")
    assert message in str(err.value)


def test_load_profile_unknown_name_lists_shipped():
    with pytest.raises(ProfileError, match="no profile named 'flat'; shipped: " + ", ".join(shipped())):
        load_profile("flat")


def test_load_profile_invalid_yaml(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(ProfileError, match="is not valid YAML"):
        load_profile(path)


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("5m", 300), ("1.5h", 5400), (30, 30),
                                           ("1h30m", 5400), ("2m30s", 150), ("1h5s", 3605)])  # Locust's -t forms
def test_parse_duration_units(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "-5m", "5 minutes", "", "h", "1h30", "m30s", "0h0m"])
def test_parse_duration_rejects_bad_input(text):
    with pytest.raises(ProfileError):
        parse_duration(text)
