"""Node images: built locally FROM scratch from the provisioned binaries, or public ones.

No registry is needed for the local images. bitcoind (Knots from Debian's
archive) goes in with its extracted loader and libraries, at the paths its ELF
header asks for; lnd is a static Go binary; ldkd, built here, goes in with the
loader and libraries it links on this machine (built only for topologies with
LDK nodes). Images are tagged with the
versions in ``versions.py``, so a new release builds a new image and an old
one is reused as is.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..cluster import ClusterError
from ..env import ClusterEnv
from ..provision import ldk as ldk_provision
from ..provision import lnd as lnd_provision
from ..versions import LND_VERSION, PUBLIC_BITCOIND_IMAGE, PUBLIC_LND_IMAGE

Progress = Callable[[str], None]
LABEL_IMAGE = "escrowlab.image"
# Bumped when the way images are built changes, so old images are not reused.
RECIPE = "r2"


class ImageError(ClusterError):
    """Raised when a node image can neither be found nor built (or pulled); says why."""


@dataclass(frozen=True)
class ImageSet:
    """The two node images and where their programs live inside them."""

    bitcoind: str
    lnd: str
    bitcoind_bin: str = "/usr/bin/bitcoind"
    bitcoin_cli_bin: str = "/usr/bin/bitcoin-cli"
    lnd_bin: str = "/bin/lnd"
    lncli_bin: str = "/bin/lncli"
    source: str = "local"
    tools: str | None = None  # sh, bitcoin-cli and lncli in one image, for exported setup steps
    ldk: str | None = None  # ldkd (built here; no public image), made when a topology has LDK nodes
    ldkd_bin: str = "/bin/ldkd"


def local_tags(env: ClusterEnv) -> ImageSet:
    """The tags the local images have (or will have) for the provisioned versions."""
    if env.bitcoind or env.lnd:
        which = " and ".join(v for v, p in (("BITCOIND", env.bitcoind), ("LND", env.lnd)) if p)
        raise ImageError(f"{which} point at binaries of your own, but local images are built from the "
                         "provisioned ones (whose libraries are known): unset them, or use --images public")
    marker = env.cache_dir / "bitcoind" / "installed.json"
    if not marker.is_file() or lnd_provision.installed(env.cache_dir) is None:
        raise ImageError("local images are built from the provisioned node binaries, which are not installed: "
                         "run `escrowlab nodes install` (or use --images public where a registry is reachable)")
    knots = json.loads(marker.read_text())["packages"]["bitcoin-knots"]
    lnd_key = _tag(lnd_provision.cache_key())
    return ImageSet(bitcoind=f"escrowlab/bitcoind:knots-{_tag(knots)}-{RECIPE}",
                    lnd=f"escrowlab/lnd:{lnd_key}-{RECIPE}",
                    tools=f"escrowlab/tools:knots-{_tag(knots)}-lnd-{lnd_key}-{RECIPE}",
                    ldk=f"escrowlab/ldkd:{_tag(ldk_provision.cache_key())}-{RECIPE}")


def public_tags() -> ImageSet:
    return ImageSet(bitcoind=PUBLIC_BITCOIND_IMAGE, lnd=PUBLIC_LND_IMAGE, bitcoind_bin="bitcoind",
                    bitcoin_cli_bin="bitcoin-cli", lnd_bin="lnd", lncli_bin="lncli", source="public")


def ensure(client, env: ClusterEnv, source: str = "local", progress: Progress = lambda _m: None,
           tools: bool = False) -> ImageSet:
    """The images for ``source``: a missing local image is built, a missing public one pulled.
    ``tools`` adds the local tools image (what exported setup steps run in)."""
    from docker.errors import ImageNotFound

    images = public_tags() if source == "public" else local_tags(env)
    wanted = [("bitcoind", images.bitcoind), ("lnd", images.lnd)]
    if tools and images.tools:
        wanted.append(("tools", images.tools))
    for kind, tag in wanted:
        try:
            client.images.get(tag)
            continue
        except ImageNotFound:
            pass
        if source == "public":
            _pull(client, tag, progress)
        else:
            progress(f"building image {tag} FROM scratch (once per version)")
            build = {"bitcoind": _bitcoind_context, "lnd": _lnd_context, "tools": _tools_context}[kind]
            _build(client, tag, build(env.cache_dir, tag))
    return images


def ensure_ldk(client, env: ClusterEnv, images: ImageSet, progress: Progress = lambda _m: None) -> None:
    """The ldkd image of ``images``, built FROM scratch from the provisioned ldkd if missing."""
    from docker.errors import ImageNotFound

    if images.ldk is None:
        raise ImageError("LDK nodes on the docker backend need the local images (ldkd is built here and has "
                         "no public image): use --images local")
    try:
        client.images.get(images.ldk)
        return
    except ImageNotFound:
        pass
    progress(f"building image {images.ldk} FROM scratch (once per ldkd build)")
    _build(client, images.ldk, _ldk_context(env.cache_dir, images.ldk))


def _pull(client, tag: str, progress: Progress) -> None:
    from docker.errors import APIError

    progress(f"pulling {tag}")
    repo, _, version = tag.rpartition(":")
    try:
        client.images.pull(repo, tag=version)
    except APIError as exc:
        raise ImageError(f"cannot pull {tag}: {exc.explanation or exc}. No registry is reachable from this "
                         "engine? Use --images local (built FROM scratch from `escrowlab nodes install`'s "
                         "binaries, no registry needed)") from None


def _build(client, tag: str, context: bytes) -> None:
    from docker.errors import APIError, BuildError

    try:
        client.images.build(fileobj=io.BytesIO(context), custom_context=True, tag=tag, rm=True,
                             forcerm=True, labels={LABEL_IMAGE: tag})
    except (BuildError, APIError) as exc:
        log = "".join(str(x.get("stream", x.get("error", ""))) for x in getattr(exc, "build_log", []) or [])
        raise ImageError(f"building {tag} failed: {exc}\n{log[-2000:]}") from None


def _bitcoind_context(cache: Path, tag: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add_text(tar, "Dockerfile", _knots_into(tar, cache, ("bitcoind", "bitcoin-cli"))
                  + 'ENTRYPOINT ["/usr/bin/bitcoind"]\n')
        for d in ("rootfs/data", "rootfs/node", "rootfs/tmp"):
            _add_dir(tar, d, 0o1777)  # a new volume takes its mount point's mode: any uid may write
    return buf.getvalue()


def _tools_context(cache: Path, tag: str) -> bytes:
    """busybox (sh, sed, grep, seq, ...), bitcoin-cli and lncli: the exported setup steps' shell."""
    busybox = shutil.which("busybox")
    if busybox is None or not _static(Path(busybox)):
        raise ImageError("the local tools image needs a static busybox: apt-get install busybox-static "
                         "(or export with --images public)")
    found = lnd_provision.installed(cache)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dockerfile = _knots_into(tar, cache, ("bitcoin-cli",))
        _add_text(tar, "Dockerfile", dockerfile + 'ENTRYPOINT ["/bin/sh", "-c"]\n')
        tar.add(busybox, arcname="rootfs/bin/busybox")
        for applet in ("sh", "sed", "grep", "seq", "cat", "sleep", "echo", "test", "[", "ls"):
            _add_symlink(tar, f"rootfs/bin/{applet}", "busybox")
        for d in ("rootfs/work", "rootfs/tmp"):
            _add_dir(tar, d, 0o1777)
        with tempfile.TemporaryDirectory() as tmp:
            tar.add(_stripped(found["lncli"], Path(tmp)), arcname="rootfs/usr/bin/lncli")
    return buf.getvalue()


def _static(path: Path) -> bool:
    """No PT_INTERP: the binary needs no loader."""
    return b"/ld-linux" not in path.read_bytes()[:4096]


def _knots_into(tar: tarfile.TarFile, cache: Path, programs: tuple[str, ...]) -> str:
    """Add Knots ``programs`` with their loader and libraries; return the Dockerfile's start."""
    root = cache / "bitcoind" / "root"
    loaders = sorted(root.glob("usr/lib/*/ld-linux*.so.*"))
    if not loaders:
        raise ImageError(f"no dynamic loader in the provisioned bitcoind ({root}): "
                         "run `escrowlab nodes install --force`")
    libdir = loaders[0].parent
    triplet = libdir.name
    interp = _interpreter(root / "usr/bin" / programs[0])
    for exe in programs:
        tar.add(root / "usr/bin" / exe, arcname=f"rootfs/usr/bin/{exe}")
    tar.add(libdir, arcname=f"rootfs/usr/lib/{triplet}")
    # The binaries' ELF header names the loader's path; put a link to ours there.
    _add_symlink(tar, "rootfs" + interp, f"/usr/lib/{triplet}/{loaders[0].name}")
    return f"FROM scratch\nCOPY rootfs/ /\nENV LD_LIBRARY_PATH=/usr/lib/{triplet}\n"


def _lnd_context(cache: Path, tag: str) -> bytes:
    found = lnd_provision.installed(cache)
    assert found is not None  # local_tags checked it
    dockerfile = f'FROM scratch\nCOPY rootfs/ /\nLABEL org.opencontainers.image.version="{LND_VERSION}"\n' \
                 'ENTRYPOINT ["/bin/lnd"]\n'
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add_text(tar, "Dockerfile", dockerfile)
        for d in ("rootfs/data", "rootfs/node", "rootfs/tmp"):
            _add_dir(tar, d, 0o1777)
        with tempfile.TemporaryDirectory() as tmp:
            for exe in ("lnd", "lncli"):
                tar.add(_stripped(found[exe], Path(tmp)), arcname=f"rootfs/bin/{exe}")
    return buf.getvalue()


def _ldk_context(cache: Path, tag: str) -> bytes:
    """ldkd, built on this machine, with the loader and libraries it links here (``ldd``)."""
    if ldk_provision.from_environ() is not None:
        raise ImageError("LDKD points at an ldkd of your own, but the local ldkd image is built from the "
                         "provisioned one: unset LDKD")
    ldkd = ldk_provision.installed(cache)
    if ldkd is None:
        raise ImageError(f"the ldkd image is built from the provisioned ldkd, which is not built: "
                         f"{ldk_provision.INSTALL_HINT}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add_text(tar, "Dockerfile", 'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["/bin/ldkd"]\n')
        for d in ("rootfs/data", "rootfs/node", "rootfs/tmp"):
            _add_dir(tar, d, 0o1777)
        tar.add(ldkd, arcname="rootfs/bin/ldkd")
        for path in _linked(ldkd):  # at the paths the binary asks for, each the file itself
            tar.add(os.path.realpath(path), arcname="rootfs" + path)
    return buf.getvalue()


def _linked(binary: Path) -> list[str]:
    """The absolute paths of the loader and shared libraries ``binary`` loads on this machine."""
    ldd = shutil.which("ldd")
    if ldd is None:
        raise ImageError(f"building the image of {binary.name} needs ldd (Debian: libc-bin)")
    out = subprocess.run([ldd, str(binary)], capture_output=True, text=True)
    paths = re.findall(r"(?:=>\s*)?(/\S+)\s+\(0x", out.stdout)
    if out.returncode != 0 or not paths:
        raise ImageError(f"ldd cannot read {binary}: {(out.stderr or out.stdout).strip()}")
    return sorted(set(paths))


def _stripped(binary: Path, tmp: Path) -> Path:
    """A copy without debug sections where ``strip`` exists: a third smaller, and the vfs
    storage driver copies the whole image into every container it creates."""
    strip = shutil.which("strip")
    if strip is None:
        return binary
    out = tmp / binary.name
    shutil.copy2(binary, out)
    if subprocess.run([strip, str(out)], capture_output=True).returncode != 0:
        return binary
    return out


def _interpreter(elf: Path) -> str:
    """The PT_INTERP path of a dynamically linked ELF binary (e.g. /lib64/ld-linux-x86-64.so.2)."""
    data = elf.read_bytes()[:4096]
    m = re.search(rb"(/lib[^\x00]*/ld-linux[^\x00]*\.so\.\d)\x00", data)
    if not m:
        raise ImageError(f"{elf} names no dynamic loader; cannot build its image")
    return m.group(1).decode()


def _add_text(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


def _add_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    tar.addfile(info)


def _tag(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", version)[:120]


def host_user() -> str:
    """``uid:gid`` of this process: containers run as the user, so files in the run folder stay theirs."""
    return f"{os.getuid()}:{os.getgid()}"
