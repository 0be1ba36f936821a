"""The model's working memory: kept by onnxruntime between runs, handed back when asked.

onnxruntime's CPU arena keeps what a run used for the next one, so whatever comes after a run
(a large photo's mask, edge colour and PNG) stacks on top of it. `release_memory` asks onnxruntime
to give it back when the run ends (handler.core.render does for large photos).
"""

from __future__ import annotations

from PIL import Image

from handler.core.model.session import BackgroundModel
from tests import graphs
from tests.graphs import GraphFile

CHANNELS = 32  # a 128 MB intermediate at 1024x1024
WORKING_BYTES = CHANNELS * 1024 * 1024 * 4


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def test_a_run_asked_to_release_its_memory_hands_it_back(graph_file: GraphFile) -> None:
    # GIVEN a model whose run needs a 128 MB intermediate, run once (its arena now holds it)
    model = BackgroundModel.load(graph_file(graphs.wide(CHANNELS)), threads=1)
    tensor = model.preprocess(Image.new("RGB", (64, 64), (120, 130, 140)))
    model.infer(tensor)
    held = resident_bytes()

    # WHEN it runs again as usual, then once more asked to release its memory
    model.infer(tensor)
    kept = resident_bytes()
    model.infer(tensor, release_memory=True)
    released = resident_bytes()

    # THEN a usual run keeps the working memory for the next, and the other hands it back
    assert kept > held - WORKING_BYTES / 4
    assert released < kept - WORKING_BYTES * 3 / 4, f"{(kept - released) / 2**20:.0f} MB handed back"
