"""Where a process's CPU goes, thread by thread, and how often its threads are switched out.

An app's CPU per escrow says how much; these say which of its threads spends it (the request
loop, the worker's pool, the node client's callbacks) and how many times the kernel switched
them in and out for it: each hand-over between two threads is a wake, a switch and a turn of
the GIL, and on two cores those add up to a share of the app's CPU that no Python profile
shows (``docs/benchmarks.md``).

From ``/proc`` (Linux): each live thread's name, its CPU seconds and its voluntary and
involuntary context switches, for a process and its children. Before Python 3.14 a thread's
kernel name is its process's (``python``) unless it names itself, as the reference app's and
the node clients' own threads do (``regtest_cluster/nodes/threadnames.py``);
``python_thread_names`` asks py-spy (``escrowlab[dev]``) for every thread's Python name, the
request loop's and uvicorn's pool's included, and a thread it cannot name keeps the kernel's.
A thread that ended during the window is not counted (its figures left with it). A thread
takes its kernel name from the thread that started it, so without py-spy gRPC's poller,
started by the node client's loop, counts as ``lnd-grpc``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from regtest_cluster.daemon import process_tree

_POOL_SUFFIX = re.compile(r"[_-]?\d+$")  # escrow-drive_3, lnd-hub-cb_0, ThreadPoolExecutor-0_1
_DUMPED = re.compile(r'^Thread (\d+) \([^)]*\): "(.*)"\s*$')  # py-spy dump: Thread 22457 (idle): "MainThread"


@dataclass(frozen=True)
class ThreadSample:
    comm: str  # the kernel's name for the thread
    cpu_s: float
    voluntary: int  # the thread gave the CPU up (it waited: a lock, a queue, a socket, the GIL)
    involuntary: int  # the scheduler took it away (another thread or process wanted the core)


def sample(pid: int | None) -> dict[int, ThreadSample]:
    """Every live thread of ``pid`` and its children, by thread id, as /proc tells it now."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, ThreadSample] = {}
    for p in process_tree(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            task = Path(f"/proc/{p}/task/{tid}")
            try:
                stat = task.joinpath("stat").read_text().rsplit(")", 1)[1].split()
                status = dict(line.split(":", 1) for line in task.joinpath("status").read_text().splitlines()
                              if ":" in line)
                comm = task.joinpath("comm").read_text().strip()
            except (OSError, IndexError, ValueError):
                continue  # it ended while it was being read
            found[int(tid)] = ThreadSample(comm, (int(stat[11]) + int(stat[12])) / tick,
                                           int(status.get("voluntary_ctxt_switches", 0)),
                                           int(status.get("nonvoluntary_ctxt_switches", 0)))
    return found


def python_thread_names(pid: int | None) -> dict[int, str]:
    """Thread id -> the Python name of each thread of ``pid`` and its children, from ``py-spy
    dump``; empty where py-spy is not installed or may not look (ptrace refused)."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        return {}
    names: dict[int, str] = {}
    for p in process_tree(pid):
        try:
            out = subprocess.run([spy, "dump", "--pid", str(p)], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        for line in out.splitlines():
            m = _DUMPED.match(line)
            if m:
                names[int(m.group(1))] = m.group(2)
    return names


def group(name: str) -> str:
    """A pool's threads under one name: ``escrow-drive_3`` -> ``escrow-drive``."""
    return _POOL_SUFFIX.sub("", name) or name


def _spent(before: dict[int, ThreadSample], after: dict[int, ThreadSample]) -> dict[int, ThreadSample]:
    """What each thread alive at the end spent between the samples (one started meanwhile
    counts from zero), under its kernel name at the end."""
    zero = ThreadSample("", 0.0, 0, 0)
    return {tid: ThreadSample(end.comm, end.cpu_s - before.get(tid, zero).cpu_s,
                              end.voluntary - before.get(tid, zero).voluntary,
                              end.involuntary - before.get(tid, zero).involuntary)
            for tid, end in after.items()}


def by_thread(before: dict[int, ThreadSample], after: dict[int, ThreadSample], names: dict[int, str],
              per: float) -> dict[str, dict]:
    """What the threads alive at the end spent between the samples, grouped by name (a thread
    started meanwhile counts from zero), each figure divided by ``per`` (escrows); largest CPU
    first."""
    groups: dict[str, dict] = {}
    for tid, spent in _spent(before, after).items():
        g = groups.setdefault(group(names.get(tid, spent.comm)), {"threads": 0, "cpu_s": 0.0, "voluntary": 0,
                                                                    "involuntary": 0})
        g["threads"] += 1
        g["cpu_s"] += spent.cpu_s
        g["voluntary"] += spent.voluntary
        g["involuntary"] += spent.involuntary
    per = max(per, 1e-9)
    return {name: {"threads": g["threads"], "cpu_s_per_escrow": round(g["cpu_s"] / per, 5),
                   "switches_per_escrow": {"voluntary": round(g["voluntary"] / per, 1),
                                           "involuntary": round(g["involuntary"] / per, 1)}}
            for name, g in sorted(groups.items(), key=lambda kv: -kv[1]["cpu_s"])}


def switches(before: dict[int, ThreadSample], after: dict[int, ThreadSample], per: float) -> dict[str, float]:
    """A process's context switches between the samples (threads alive at the end), per ``per``."""
    spent = _spent(before, after).values()
    per = max(per, 1e-9)
    return {"voluntary": round(sum(t.voluntary for t in spent) / per, 1),
            "involuntary": round(sum(t.involuntary for t in spent) / per, 1)}
