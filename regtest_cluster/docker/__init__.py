"""The docker backend: the same ``Cluster``, with its daemons run as containers.

- ``engine``: reaching the Docker engine (one clear error when none answers), and
  finding or removing everything a cluster made, by its label.
- ``images``: node images built ``FROM scratch`` from the provisioned binaries, or public ones.
- ``daemon``: ``ContainerDaemon``, the ``Daemon`` interface over one container.
- ``backend``: ``DockerBackend`` and the docker flavour of the bitcoind and LND nodes
  (where they listen, how peers reach them); chosen with ``--backend docker``.
- ``setup_script`` and ``export``: a topology as docker-compose.yml or Kubernetes manifests.

Importing this package starts nothing and needs no engine.
"""
