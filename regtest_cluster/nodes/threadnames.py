"""Threads named for the kernel as Python names them.

Python (before 3.14) leaves every thread's kernel name that of its process (``python``), so
``/proc``, ``top -H``, ``perf`` and ``bench escrow``'s ``app_threads`` cannot tell the node
client's loop from a pool of workers without asking py-spy. A thread that calls
``name_os_thread()`` as it starts (a pool's ``initializer``, a loop's first step) carries its
Python name there too, cut to the kernel's 15 bytes. Linux only; elsewhere nothing happens.
"""

from __future__ import annotations

import ctypes
import sys
import threading

_PR_SET_NAME = 15

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):
    _prctl = None


def name_os_thread(name: str | None = None) -> None:
    """Give the calling thread ``name`` (default: its Python name) in the kernel too."""
    if _prctl is not None:
        _prctl(_PR_SET_NAME, ctypes.c_char_p((name or threading.current_thread().name).encode()[:15]), 0, 0, 0)


def named(target):
    """``target`` run in a thread that first takes its Python name in the kernel."""
    def run(*args, **kwargs):
        name_os_thread()
        return target(*args, **kwargs)

    return run
