"""An exported docker-compose.yml, run by docker-compose on the local engine: the topology comes
up with every channel active, and `down -v` leaves nothing."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid

import pytest
import yaml

from regtest_cluster.docker import engine
from regtest_cluster.ports import port_is_free
from regtest_cluster.topology import load
from regtest_cluster.waiting import wait_for
from tests.regtest_cluster.test_cli import run

pytestmark = [pytest.mark.cluster, pytest.mark.docker]


def _free_range(n: int) -> int:
    """Below the kernel's ephemeral range (32768+), where other processes' client ports land."""
    rng = random.Random()

    def base() -> int | None:
        start = rng.randrange(20_000, 32_000)
        return start if all(port_is_free(p) for p in range(start, start + n)) else None

    return wait_for(base, timeout=10, what=f"{n} free consecutive ports")


def test_export_compose_local_images_brings_up_the_topology(tmp_path, docker_engine, cluster_env):
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    topo = load("line")
    spec = topo.model_dump(by_alias=True, mode="json") | {"base_port": _free_range(4 + 3 * len(topo.nodes))}
    (tmp_path / "line.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "docker-compose.yml"
    run("cluster", "export", "compose", "-t", str(tmp_path / "line.yaml"), "--images", "local", "-o", str(out),
        timeout=600)
    project = f"escrowlabtest{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DOCKER_HOST": cluster_env.docker_host or os.environ.get("DOCKER_HOST", "")}
    cmd = [compose, "-p", project, "-f", str(out)]
    docker = engine.client(cluster_env)
    label = f"com.docker.compose.project={project}"
    try:
        up = subprocess.run([*cmd, "up", "-d"], env=env, capture_output=True, text=True, timeout=900)
        assert up.returncode == 0, up.stderr[-3000:]

        def setup_done():
            for c in docker.containers.list(all=True, filters={"label": label}):
                state = c.attrs["State"]
                if c.status == "exited" and state["ExitCode"] != 0:
                    raise AssertionError(f"{c.name} exited {state['ExitCode']}:\n{c.logs().decode()[-2000:]}")
            last = docker.containers.list(all=True, filters={"label": [label, "com.docker.compose.service=setup-5-confirm"]})
            return last[0] if last and last[0].status == "exited" else None

        last = wait_for(setup_done, timeout=300, what="the last setup step to finish")
        assert "the cluster is ready" in last.logs().decode()
        expected = {n.name: 0 for n in topo.nodes}
        for ch in topo.channels:
            expected[ch.from_] += 1
            expected[ch.to] += 1
        for name, count in expected.items():
            node = docker.containers.list(filters={"label": [label, f"com.docker.compose.service=lnd-{name}"]})[0]
            info = node.exec_run(["/bin/lncli", "--network=regtest", "--lnddir=/node", "--rpcserver=localhost:10009",
                                  "getinfo"])
            assert info.exit_code == 0, info.output.decode()
            assert yaml.safe_load(info.output)["num_active_channels"] == count
    finally:
        down = subprocess.run([*cmd, "down", "-v"], env=env, capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stderr[-2000:]
    assert docker.containers.list(all=True, filters={"label": label}) == []
    assert docker.volumes.list(filters={"label": label}) == []
    assert docker.networks.list(filters={"label": label}) == []
