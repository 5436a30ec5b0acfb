"""Local images: built FROM scratch from the provisioned binaries, and they run."""

from __future__ import annotations

import pytest

from regtest_cluster.docker import engine, images

pytestmark = pytest.mark.docker


def test_build_bitcoind_image_from_scratch_runs_bitcoind(docker_engine, cluster_env):
    docker = engine.client(cluster_env)
    tag = "escrowlab-test/bitcoind:probe"
    images._build(docker, tag, images._bitcoind_context(cluster_env.cache_dir, tag))
    try:
        image = docker.images.get(tag)
        assert image.history()[-1]["CreatedBy"] == "" or len(image.history()) <= 4  # FROM scratch: no base layers
        out = docker.containers.run(tag, ["-version"], remove=True).decode()
        assert "Bitcoin Knots daemon version" in out
    finally:
        docker.images.remove(tag, force=True)


def test_ensure_local_images_are_tagged_with_the_provisioned_versions(docker_engine, cluster_env):
    docker = engine.client(cluster_env)
    found = images.ensure(docker, cluster_env, "local")
    expected = images.local_tags(cluster_env)
    assert (found.bitcoind, found.lnd) == (expected.bitcoind, expected.lnd)
    from regtest_cluster.versions import LND_VERSION

    assert found.lnd.split(":")[1].startswith(LND_VERSION)
    for tag in (found.bitcoind, found.lnd):
        assert docker.images.get(tag).labels[images.LABEL_IMAGE] == tag


def test_ensure_public_images_without_registry_says_so(docker_engine, cluster_env, monkeypatch):
    docker = engine.client(cluster_env)
    monkeypatch.setattr(images, "public_tags", lambda: images.ImageSet(
        bitcoind="escrowlab-test/not-published:0", lnd="escrowlab-test/not-published:0", source="public"))
    with pytest.raises(images.ImageError, match=r"cannot pull escrowlab-test/not-published:0.*--images local"):
        images.ensure(docker, cluster_env, "public")


def test_ldk_image_needs_the_local_images():
    with pytest.raises(images.ImageError, match="LDK nodes on the docker backend need the local images"):
        images.ensure_ldk(None, None, images.public_tags())


def test_ldkd_is_packed_with_the_loader_and_libraries_it_links(cluster_env):
    from regtest_cluster.provision import ldk as ldk_provision

    ldkd = ldk_provision.installed(cluster_env.cache_dir)
    if ldkd is None:
        pytest.skip(f"ldkd is not built: {ldk_provision.INSTALL_HINT}")
    linked = images._linked(ldkd)
    assert any("/ld-linux" in p for p in linked) and any("/libc.so" in p for p in linked), linked
    assert all(p.startswith("/") for p in linked)
