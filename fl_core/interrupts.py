"""Starting child processes that a Ctrl-C cannot kill halfway through their start-up.

A terminal's Ctrl-C sends SIGINT to every process of the foreground group: the driver
and each worker it has started. A spawned worker still importing torch dies of it with a
``KeyboardInterrupt`` traceback on the user's terminal, although the driver handles the
interrupt itself (it stops the workers and says how to resume). A child inherits the
signal mask of the thread that starts it, and Python leaves a blocked SIGINT blocked, so
a worker started inside ``sigint_held()`` never sees the terminal's SIGINT; the driver
receives the held one the moment the block ends. (CPython starts its
``multiprocessing.resource_tracker`` the same way.) Only the spawn start method is covered
(the one FedArena uses): a forked child inherits Python's own SIGINT handler instead.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import resource_tracker


@contextmanager
def sigint_held() -> Iterator[None]:
    """Block SIGINT in this thread while the body starts child processes (they inherit the block)."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks (and no process groups to share)
        yield
        return
    # A spawn starts multiprocessing's resource tracker first if it is not running, and that
    # start *unblocks* SIGINT afterwards (resource_tracker.ensure_running): start it before.
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
