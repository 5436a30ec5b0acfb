"""Load shapes as data: a profile is a list of stages read from YAML.

A stage lasts until a fraction of the run (``until: 0.25``) and asks for a
fraction of ``--users`` (``users: 0.5``), reached at ``spawn_rate`` users a
second. The same file therefore serves a 60-second CI smoke run and a
4-hour soak. A profile may also weigh the user classes (``mix``) and name its
default duration, for shapes such as soak that only make sense long.

Pure data: no locust here, so the CLI can validate a profile before it
starts anything.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PROFILE_DIR = Path(__file__).parent / "profiles"
SCALED = ("browser", "buyer")
FIXED = ("seller", "courier", "arbiter")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_COMPOUND = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")  # Locust's -t form: 1h30m, 2m30s


class ProfileError(ValueError):
    """A profile or duration that cannot be used; the message names the file and field."""


def parse_duration(text: str | int | float) -> float:
    """``90``, ``"90s"``, ``"5m"``, ``"1.5h"``, and Locust's ``"1h30m"``, ``"2m30s"`` -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    elif (match := _DURATION.match(str(text))):
        seconds = float(match[1]) * {"s": 1, "m": 60, "h": 3600, None: 1}[match[2]]
    elif (match := _COMPOUND.match(str(text).strip().replace(" ", ""))) and any(match.groups()):
        hours, minutes, secs = (int(g or 0) for g in match.groups())
        seconds = float(hours * 3600 + minutes * 60 + secs)
    else:
        raise ProfileError(f"duration {text!r} is not a number of seconds or like 30s, 5m, 2h, 1h30m")
    if seconds <= 0:
        raise ProfileError(f"duration {text!r} must be positive")
    return seconds


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    until: float = Field(gt=0, le=1, description="end of the stage, as a fraction of the run")
    users: float = Field(ge=0, le=10, description="users in this stage, as a fraction of --users")
    spawn_rate: float | None = Field(default=None, gt=0, description="users started (or stopped) a second")


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    description: str = ""
    default_duration: str = "5m"
    spawn_rate: float = Field(default=5.0, gt=0)
    # Browsers and buyers scale with --users by weight; sellers, couriers and arbiters
    # are a fixed number on each Locust process (they serve the buyers next to them).
    mix: dict[str, int] = Field(default_factory=lambda: {"browser": 1, "buyer": 3})
    fixed: dict[str, int] = Field(default_factory=lambda: {"seller": 2, "courier": 1, "arbiter": 1})
    stages: list[Stage] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> "Profile":
        ends = [s.until for s in self.stages]
        if ends != sorted(set(ends)):
            raise ValueError(f"stages[].until must strictly increase; got {ends}")
        if ends[-1] != 1:
            raise ValueError(f"the last stage must end the run (until: 1.0); it ends at {ends[-1]}")
        for field, allowed in (("mix", SCALED), ("fixed", FIXED)):
            unknown = sorted(set(getattr(self, field)) - set(allowed))
            if unknown:
                raise ValueError(f"{field} names unknown user classes {unknown}; known: {', '.join(allowed)}")
        if any(n < 0 for n in self.fixed.values()):
            raise ValueError("fixed counts must be >= 0")
        if any(w < 0 for w in self.mix.values()) or not any(self.mix.values()):
            raise ValueError("mix weights must be >= 0 and at least one positive")
        parse_duration(self.default_duration)
        return self

    def plan(self, users: int, duration_s: float, processes: int = 1) -> list[dict]:
        """Absolute stages for Locust's shape: end second, user count, spawn rate.

        ``users`` counts browsers and buyers; the fixed users of every Locust
        process come on top (Locust starts fixed users first)."""
        fixed = sum(self.fixed.values()) * processes
        return [{"end_s": round(s.until * duration_s, 3), "users": fixed + max(0, round(s.users * users)),
                 "spawn_rate": s.spawn_rate or self.spawn_rate} for s in self.stages]


def shipped() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name (``steady``) or a YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ProfileError(f"no profile named {name_or_path!r}; shipped: {', '.join(shipped())}")
    return parse_profile(_read_yaml(path), str(path))


def parse_profile(data: object, source: str = "profile") -> Profile:
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{source}: {one_line(exc)}") from None


def _read_yaml(path: Path) -> object:
    if not path.is_file():
        raise ProfileError(f"{path} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path} is not valid YAML: {exc}") from None


def one_line(exc: ValidationError) -> str:
    """pydantic's errors as one line: ``field.path: message; ...``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
