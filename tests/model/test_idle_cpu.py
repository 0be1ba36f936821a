"""A loaded model leaves the CPU alone between runs.

onnxruntime's thread pool busy-waits for more work after each run by default. In the service that
is the moment the cutout's own work (mask, edge colour, PNG) starts on the same cores, and on a
fractional vCPU the spinning burns the quota the function pays for.
"""

from __future__ import annotations

import os
import threading

from PIL import Image

from handler.core.model.session import BackgroundModel
from tests import graphs
from tests.graphs import GraphFile

# The window in which the pool's threads are watched after a run. With spinning on, onnxruntime
# 1.32's worker spun for ~40 ms of CPU after each run here; without it, none.
WINDOW_S = 0.2
IDLE_CPU_NS = 5_000_000


def threads() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def cpu_ns(thread_ids: set[str]) -> int:
    """CPU time of these threads of this process (the scheduler's own count, in nanoseconds)."""
    total = 0
    for thread_id in thread_ids:
        with open(f"/proc/self/task/{thread_id}/schedstat") as schedstat:
            total += int(schedstat.read().split()[0])
    return total


def test_the_thread_pool_does_not_spin_after_a_run(graph_file: GraphFile) -> None:
    # GIVEN a model with a thread pool of two (its threads: those the load started), run once on a
    # picture large enough that the Conv is split over the pool
    before = threads()
    model = BackgroundModel.load(graph_file(graphs.constant(1.0)), threads=2)
    pool = threads() - before
    assert pool, "the session started no thread of its own"
    picture = Image.new("RGB", (1024, 1024), (120, 130, 140))
    model.probabilities(picture)

    # WHEN it runs again and this thread then waits without working
    model.probabilities(picture)
    started = cpu_ns(pool)
    threading.Event().wait(WINDOW_S)
    spent = cpu_ns(pool) - started

    # THEN the pool's threads used next to no CPU in the meantime
    assert spent < IDLE_CPU_NS, f"the model's threads used {spent / 1e6:.1f} ms of CPU while idle"
