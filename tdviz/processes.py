"""Worker processes that never outlive the process that started them (no torch here)."""

from __future__ import annotations

import os

__all__ = ["follow_parent", "watch_parent"]


def watch_parent(parent_pid: int, interval: float = 0.5) -> None:
    """End this process as soon as ``parent_pid`` is gone (killed, even by SIGKILL, or exited):
    Linux's parent-death signal when available, and a thread that polls the parent otherwise."""
    import threading

    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(0)

    def poll() -> None:
        import time

        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=poll, name="tdviz-parent-watch", daemon=True).start()


def follow_parent(_worker_id: int | None = None) -> None:
    """A DataLoader ``worker_init_fn``: the worker ends as soon as the process that started it dies
    (torch's own check runs only every 5 s)."""
    watch_parent(os.getppid())
