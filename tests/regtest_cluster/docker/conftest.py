"""The docker backend's tests: the same fixtures, built as containers.

Everything here is skipped, with the reason, only when no Docker engine answers
(CI starts one with `.ci/dockerd start`). ``cluster_backend`` and the shared
``cluster_pool`` are overridden for this folder, so the fixtures every test
body already uses (`cluster`, `fresh_cluster`, `lnd_factory`, `bitcoind`,
`market`) run on containers.
"""

from __future__ import annotations

import os

import pytest

from regtest_cluster.docker.engine import engine_reachable
from regtest_cluster.launcher import backend_maker
from regtest_cluster.pytest_plugin import ClusterPool
from tests.reference_app.escrow.conftest import market  # noqa: F401  (the ln_hold tests' fixture)


@pytest.fixture(scope="session")
def docker_engine(cluster_env) -> None:
    reason = engine_reachable(cluster_env)
    if reason and os.environ.get("ESCROWLAB_REQUIRE_DOCKER"):
        pytest.fail(f"ESCROWLAB_REQUIRE_DOCKER is set but no Docker engine answers: {reason}", pytrace=False)
    if reason:
        # One short line in the -ra summary: where it looked, and how CI gets an engine.
        where = cluster_env.docker_host or "/var/run/docker.sock"
        pytest.skip(f"docker backend not tested: no Docker engine answers at {where} "
                    "(CI runs `eval \"$(.ci/dockerd start)\"` first and sets ESCROWLAB_REQUIRE_DOCKER=1)")


@pytest.fixture(scope="session")
def cluster_backend(cluster_env, docker_engine):
    """Docker backends; at the end of the session (after the pool and every fixture
    cluster is torn down) none of their containers, networks or volumes may be left."""
    make = backend_maker(cluster_env, "docker")
    made = []

    def maker(label: str):
        backend = make(label)
        made.append(backend)
        return backend

    yield maker
    left = {b.cluster_id: b.leftovers() for b in made if b.leftovers()}
    if left:
        pytest.fail(f"fixture teardown left docker objects behind: {left}", pytrace=False)


@pytest.fixture(scope="session")
def cluster_pool(request, cluster_env, node_binaries, cluster_backend):
    pool = ClusterPool(cluster_env, node_binaries, cluster_backend)
    yield pool
    pool.close(keep=request.session.testsfailed > 0)
