"""The soak loop: many invocations in one process, alternating the jobs and API entry points.

Shared by tests/functional/test_soak.py (a short run in CI) and benchmarks/soak.py (a long one
with the real model, reporting the RSS slope).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

ROOT = Path(__file__).resolve().parents[2]
INPUT_PREFIX = "uploads/"


MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
}


def varied_photos(*, large: bool = True) -> dict[str, bytes]:
    """Photos by key: the samples, then generated ones in other formats, modes and sizes.

    Deterministic (seeded). `large=False` leaves out the 2-4 MP JPEGs (the test's quicker mix).
    """
    import numpy as np
    from PIL import Image

    samples = sorted((ROOT / "samples").glob("*.jpg"))
    photos = {f"{INPUT_PREFIX}{path.name}": path.read_bytes() for path in samples}
    rng = np.random.default_rng(20261124)

    def photo(sample: Path, megapixels: float) -> Image.Image:
        with Image.open(sample) as source:
            width, height = source.size
            scale = (megapixels * 1e6 / (width * height)) ** 0.5
            resized = source.convert("RGB").resize(
                (round(width * scale), round(height * scale)), Image.Resampling.BICUBIC
            )
        grain = rng.normal(0.0, 4.0, (resized.height, resized.width, 3))
        return Image.fromarray(np.clip(np.asarray(resized, dtype=np.float32) + grain, 0, 255).astype(np.uint8))

    def save(name: str, image: Image.Image, fmt: str, **options: Any) -> None:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        photos[f"{INPUT_PREFIX}{name}"] = buffer.getvalue()

    base = photo(samples[0], 0.5)
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    save("alpha.png", rgba, "PNG")
    save("grey.png", base.convert("L"), "PNG")
    save("deep.png", Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257), "PNG")
    save("lossy.webp", photo(samples[1], 0.8), "WEBP", quality=80)
    save("palette.gif", photo(samples[2], 0.3).convert("P", palette=Image.Palette.ADAPTIVE), "GIF")
    save("scan.tiff", photo(samples[1], 0.4), "TIFF")
    save("old.bmp", photo(samples[2], 0.3), "BMP")
    save("print.jpg", photo(samples[0], 0.6).convert("CMYK"), "JPEG", quality=90)
    rotated = photo(samples[1], 1.0)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to view
    save("phone.jpg", rotated, "JPEG", quality=90, exif=exif)
    if large:
        for number, megapixels in enumerate((2, 3, 4)):
            save(f"camera-{megapixels}mp.jpg", photo(samples[number % len(samples)], megapixels), "JPEG", quality=90)
    return photos


def _mime(data: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as picture:
        return MIME.get(picture.format or "", "application/octet-stream")


def _s3_put_event(bucket: str, key: str) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / "s3_put.json").read_text())
    record = event["Records"][0]
    record["s3"]["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
    record["s3"]["object"]["key"] = quote_plus(key, safe="/")
    return event


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def slope_kb_per_invocation(rss_mb_samples: list[float]) -> float:
    """Least-squares slope of RSS over invocation number, in KB per invocation."""
    import numpy as np

    if len(rss_mb_samples) < 2:
        return 0.0
    x = np.arange(len(rss_mb_samples), dtype=np.float64)
    slope, _ = np.polyfit(x, np.asarray(rss_mb_samples, dtype=np.float64) * 1024.0, 1)
    return float(slope)


@dataclass(frozen=True)
class SoakResult:
    invocations: int
    warmup: int
    rss_mb: list[float]  # after each invocation
    fds: list[int]  # after each invocation
    fds_before: int
    temp_files_left: list[str]
    seconds: list[float]
    rss_before_mb: float

    @property
    def slope_kb_per_invocation(self) -> float:
        return slope_kb_per_invocation(self.rss_mb[self.warmup :])

    def summary(self) -> dict[str, Any]:
        after_warmup = self.rss_mb[self.warmup - 1] if self.warmup else self.rss_before_mb
        return {
            "invocations": self.invocations,
            "warmup": self.warmup,
            "rss_before_first_mb": round(self.rss_before_mb, 1),
            "rss_after_warmup_mb": round(after_warmup, 1),
            "rss_end_mb": round(self.rss_mb[-1], 1),
            "rss_max_after_warmup_mb": round(max(self.rss_mb[self.warmup :]), 1),
            "rss_slope_after_warmup_kb_per_invocation": round(self.slope_kb_per_invocation, 2),
            "fds_before_first": self.fds_before,
            "fds_after_warmup": self.fds[self.warmup - 1] if self.warmup else self.fds_before,
            "fds_end": self.fds[-1],
            "fds_max": max(self.fds),
            "temp_files_left": self.temp_files_left,
            "invocation_ms_median": round(statistics.median(self.seconds) * 1000, 1),
        }


def soak(
    photos: dict[str, bytes],
    invocations: int,
    warmup: int,
    *,
    rss_mb: Callable[[], float] = lambda: float("nan"),
    progress: Callable[[int, float], None] | None = None,
) -> SoakResult:
    """`invocations` calls in this process, alternating the jobs and API entry points.

    The environment must already name the model, the S3 endpoint, INPUT/OUTPUT_BUCKET (the
    photos uploaded under their keys in INPUT_BUCKET), and the Lambda's init is done here (the
    entry points load the model at import). Raises if any invocation does not succeed. `rss_mb`
    measures the process's memory after each call (the benchmark's; the test traces allocations).
    """
    import boto3

    from handler import api, jobs
    from handler.aws.observability import logger
    from handler.local.api_gateway import api_gateway_event
    from handler.local.context import LocalLambdaContext

    output_bucket = os.environ["OUTPUT_BUCKET"]
    input_bucket = os.environ["INPUT_BUCKET"]
    s3 = boto3.client("s3")
    keys = sorted(photos)
    mimes = {key: _mime(data) for key, data in photos.items()}
    temp_dir = Path(tempfile.gettempdir())
    temp_before = set(os.listdir(temp_dir))
    # Logs and EMF metrics go to one sink opened once: a growing buffer would look like a leak.
    sink = open(os.devnull, "w")  # noqa: SIM115 (closed below)
    previous_stream = logger.registered_handler.setStream(sink)  # type: ignore[attr-defined]
    rss: list[float] = []
    fds: list[int] = []
    seconds: list[float] = []
    fds_before = open_fds()
    rss_before = rss_mb()
    try:
        for number in range(invocations):
            key = keys[number % len(keys)]
            context = LocalLambdaContext("background-remover-soak", 300)
            began = time.perf_counter()
            with contextlib.redirect_stdout(sink):
                if number % 2 == 0:
                    summary = jobs.lambda_handler(_s3_put_event(input_bucket, key), context)
                    if summary["processed"] != 1:
                        raise RuntimeError(f"invocation {number}: {key} not processed: {summary}")
                    for output in summary["objects"][0]["outputs"]:
                        s3.delete_object(Bucket=output_bucket, Key=output)
                else:
                    route = "/remove" if number % 4 == 1 else "/mask"
                    event = api_gateway_event("POST", route, [("content-type", mimes[key])], photos[key])
                    response = api.lambda_handler(event, context)
                    if response["statusCode"] not in (200, 303):
                        raise RuntimeError(
                            f"invocation {number}: {route} {key}: {response['statusCode']} "
                            f"{str(response.get('body'))[:200]}"
                        )
            seconds.append(time.perf_counter() - began)
            rss.append(rss_mb())
            fds.append(open_fds())
            if progress is not None:
                progress(number, rss[-1])
    finally:
        logger.registered_handler.setStream(previous_stream)  # type: ignore[attr-defined]
        sink.close()
    left = sorted(set(os.listdir(temp_dir)) - temp_before)
    return SoakResult(invocations, warmup, rss, fds, fds_before, left, seconds, rss_before)
