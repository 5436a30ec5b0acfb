"""The load shape: Locust's ``StagesShape`` pattern, its stages read from the plan
(``profiles.Profile.plan``) instead of written in code."""

from __future__ import annotations

from locust import LoadTestShape


class PlanShape(LoadTestShape):
    """Each stage holds its user count until its end second; after the last, the run stops."""

    stages: list[dict] = []

    def tick(self):
        run_time = self.get_run_time()
        for stage in self.stages:
            if run_time < stage["end_s"]:
                return stage["users"], stage["spawn_rate"]
        return None
