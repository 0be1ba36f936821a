"""The bad-input corpus (tests/corpus.py) through the real API entry point: outcomes per family.

Each case is POSTed as the raw body (declared image/jpeg, whatever it is) to `handler.api`, with a
one-layer 64x64 test graph as the model, so the figures are about decoding and refusing. Prints a
table (family x status/code) with the slowest case per family and the process's peak RSS, and
writes benchmarks/results/corpus.json. A 5xx shows up as its own column and makes the exit status 1.

Usage: python scripts/corpus_report.py
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import platform
import resource
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "corpus.json"

from tests import graphs  # noqa: E402
from tests.corpus import cases  # noqa: E402


def api_event(data: bytes) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / "api_v2_remove.json").read_text())
    event["headers"] = {"host": event["headers"]["host"], "content-type": "image/jpeg"}
    event["queryStringParameters"], event["rawQueryString"] = None, ""
    event["body"], event["isBase64Encoded"] = base64.b64encode(data).decode(), True
    return event


def main() -> int:
    warnings.simplefilter("ignore")
    folder = Path(tempfile.mkdtemp(prefix="corpus-report-"))
    model = graphs.save(graphs.channel_affine(1, 8.0, -4.0, size=64), folder / "tiny.onnx")
    # The API function's environment, set before it is imported (it loads the runtime on import).
    os.environ.update(
        MODEL_PATH=str(model),
        MODEL_OUTPUT="logits",
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="WARNING",
        AWS_DEFAULT_REGION="us-east-1",
    )
    os.environ.pop("OUTPUT_BUCKET", None)
    from handler import api
    from handler.local.context import LocalLambdaContext

    context = LocalLambdaContext(function_name="corpus-report", timeout_seconds=60)
    corpus = cases()
    table: dict[str, Counter[str]] = defaultdict(Counter)
    slowest: dict[str, tuple[float, str]] = {}
    for case in corpus:
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the metrics (EMF) each refusal prints
            reply = api.lambda_handler(api_event(case.data), context)
        seconds = time.perf_counter() - started
        status = reply["statusCode"]
        outcome = "200" if status == 200 else f"{status} {json.loads(reply['body'])['error']['code']}"
        table[case.family][outcome] += 1
        if seconds > slowest.get(case.family, (0.0, ""))[0]:
            slowest[case.family] = (seconds, case.name)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    columns = sorted({outcome for counts in table.values() for outcome in counts})
    print(f"{len(corpus)} cases through handler.api (raw body, Content-Type: image/jpeg)\n")
    print("| family | cases | " + " | ".join(columns) + " | slowest case (ms) |")
    print("| --- | ---: | " + " | ".join("---:" for _ in columns) + " | --- |")
    for family, counts in table.items():
        cells = " | ".join(str(counts.get(column, "")) for column in columns)
        seconds, name = slowest[family]
        print(f"| {family} | {sum(counts.values())} | {cells} | {name} ({seconds * 1000:.0f}) |")
    totals = Counter[str]()
    for counts in table.values():
        totals.update(counts)
    print("| **all** | " + str(len(corpus)) + " | " + " | ".join(str(totals[column]) for column in columns) + " | |")
    print(f"\npeak RSS of the whole run: {peak_rss_mb:.0f} MB")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "cases": len(corpus),
                "outcomes": {family: dict(counts) for family, counts in table.items()},
                "totals": dict(totals),
                "slowest_ms": {family: [name, round(seconds * 1000, 1)] for family, (seconds, name) in slowest.items()},
                "peak_rss_mb": round(peak_rss_mb, 1),
                "python": platform.python_version(),
            },
            indent=2,
        )
        + "\n"
    )
    return 1 if any(column.startswith("5") for column in columns) else 0


if __name__ == "__main__":
    sys.exit(main())
