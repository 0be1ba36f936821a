"""What the photo's own work holds at its peak, counted in bytes (tests/helpers/memory.py).

A deployment's memory is the model's peak plus the photo's share, and a new AWS account's 3,008 MB
leaves the photo ~1 GB: the full-size mask must cost its own byte per pixel and little more, and a
warm process must not carry one photo's freed memory into the next.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers.memory import ROOT, peak_bytes

MASK_SIZE = (6000, 4000)  # 24 MP
MASK_PIXELS = MASK_SIZE[0] * MASK_SIZE[1]
# What may come on top, whatever the photo's size: float copies at the model's size (~12 MB) and a
# few bands in flight.
BAND_ALLOWANCE = 32 * 2**20


def test_a_large_mask_and_its_subject_box_cost_the_mask_and_a_few_mb() -> None:
    # GIVEN the model's probabilities at 1024x1024
    setup = (
        "import numpy as np\n"
        "from handler.core.image.compose import foreground_box, to_mask\n"
        "probabilities = np.random.default_rng(5).random((1024, 1024), dtype=np.float32)\n"
    )
    # WHEN they become a 24 MP photo's mask and its subject's box
    work = f"alpha = to_mask(probabilities, {MASK_SIZE})\nfound = foreground_box(alpha)\n"

    peak = peak_bytes(setup, work)

    # THEN the mask's own byte per pixel and a few bands' worth more were resident at the peak
    # (not a float image of the photo's size: 4 bytes per pixel, nor an 8-bit copy of the mask)
    assert peak <= MASK_PIXELS + BAND_ALLOWANCE, f"{peak / MASK_PIXELS:.2f} bytes per pixel"


_FREED_BEFORE_A_PHOTO = """
import io, sys
from pathlib import Path
import numpy as np
from PIL import Image
from handler.core.image.limits import ImageLimits
from handler.core.image.options import RenderOptions
from handler.core.model.session import BackgroundModel
from handler.core.render import process
from tests import graphs

def resident():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))

model = BackgroundModel.load(graphs.save(graphs.constant(8.0), Path(sys.argv[1])))
photo = io.BytesIO()
Image.new("RGB", (64, 48), (90, 120, 150)).save(photo, "JPEG")
process(photo.getvalue(), ["cutout"], RenderOptions(), model, ImageLimits())
# What a photo's work leaves behind: many buffers below glibc's mmap threshold, all freed but one
# made last, so that the freed ones cannot merge into the top of the heap and go back by themselves.
buffers = [np.ones(100_000, dtype=np.uint8) for _ in range(2_000)]
last = buffers.pop()
del buffers
before = resident()
process(photo.getvalue(), ["cutout"], RenderOptions(), model, ImageLimits())
print(before - resident())
"""


def test_a_photo_starts_by_handing_back_what_was_freed_before_it(tmp_path: object) -> None:
    # GIVEN a warm process holding ~200 MB that was freed, WHEN it takes a small photo, THEN its
    # resident memory falls by much of that (~110 MB here, net of what the photo's own work makes
    # resident; it rose by ~60 MB without the hand-back): a warm Lambda environment's peak does not
    # climb photo after photo (nine 64 MP photos took one from 2.7 to 3.0 GB before it did).
    result = subprocess.run(
        [sys.executable, "-c", _FREED_BEFORE_A_PHOTO, str(ROOT / ".cache" / "test-memory-constant.onnx")],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    handed_back = json.loads(result.stdout.strip().splitlines()[-1])
    assert handed_back > 64 * 2**20, f"{handed_back / 2**20:.0f} MB handed back"
