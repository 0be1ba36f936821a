"""Soak, short: 100 invocations in this process leave no file descriptor, temp file or held memory.

The same loop (tests/helpers/soak.py) as benchmarks/soak.py (which runs 500 with the real U-2-Net-p in a process of its
own and reports the RSS slope), here with a one-node graph so that the time goes to the
function's own work: decoding, encoding, S3 and the entry points, where a leak would be. The
entry points alternate (jobs on the local S3, API), the photos vary in format, mode and size.

Memory is checked as what the function's code still holds, not as RSS: in this process RSS also
carries moto's in-memory S3 (it keeps every object it was sent) and the allocator's settling,
which takes ~150 invocations here (benchmarks/README.md, "Soak"). tracemalloc sees every Python
object and numpy buffer still alive, by the line of handler/ that allocated it; the live total
must not grow between invocation 60 and 100.
"""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from tests import graphs
from tests.helpers.soak import INPUT_PREFIX, soak, varied_photos

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:No application metrics to publish")]

WARMUP = 20
TRACED = 40  # invocations per traced half
# Far below a leak: keeping any one of these photos' bytes, pixels or outputs per invocation
# would add 40 x 30-3000 KB; what is legitimately alive at the end is the last call's leftovers.
MAX_HELD_GROWTH_KB = 512
# A few sockets come and go with the local S3 server's connections in this process; a leak of
# one descriptor per invocation would be 80 more.
FD_SLACK = 4
HANDLER = str(Path(__file__).resolve().parents[2] / "handler" / "*")


def held_by_handler_kb(snapshot: tracemalloc.Snapshot) -> float:
    """Live memory allocated by a line of handler/ (anywhere in the allocation's stack)."""
    traces = snapshot.filter_traces([tracemalloc.Filter(True, HANDLER, all_frames=True)])
    return sum(stat.size for stat in traces.statistics("filename")) / 1024


def test_many_invocations_leave_no_fd_temp_file_or_held_memory(
    deploy: Any, s3: Any, graph_file: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the function deployed with a tiny model, photos of every kind in its input bucket, and
    # a temp folder of its own (as Lambda's /tmp is)
    model = graph_file(graphs.conv1x1((1.0, 0.0, 0.0), -0.5, size=320))
    deployment = deploy(INPUT_PREFIX=INPUT_PREFIX, MODEL_PATH=str(model), MODEL_OUTPUT="logits")
    photos = varied_photos(large=False)
    for key, data in photos.items():
        s3.put_object(Bucket=deployment.input_bucket, Key=key, Body=data)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    # WHEN it handles 100 invocations, alternating the jobs and API entry points: a warm-up, then
    # two halves with every allocation traced
    warm = soak(photos, WARMUP, WARMUP)
    tracemalloc.start(8)
    try:
        first = soak(photos, TRACED, 0)
        middle = held_by_handler_kb(tracemalloc.take_snapshot())
        second = soak(photos, TRACED, 0)
        end = held_by_handler_kb(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()

    # THEN nothing is left open or behind, and the function's code holds no more memory than before
    assert second.fds[-1] <= warm.fds[-1] + FD_SLACK, f"fds: {warm.fds[-1]} -> {second.fds[-1]}"
    assert warm.temp_files_left == first.temp_files_left == second.temp_files_left == []
    assert list(temp.iterdir()) == []
    assert end - middle < MAX_HELD_GROWTH_KB, (
        f"handler/ holds {middle:.0f} KB after 60 invocations, {end:.0f} KB after 100"
    )
