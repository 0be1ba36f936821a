"""What the fuzz targets share: the repository on sys.path, seeds, and the libFuzzer run."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".cache" / "fuzz"
sys.path.insert(0, str(ROOT))


def run(name: str, test_one_input: Callable[[bytes], None], seeds: Iterable[bytes], timeout: int = 20) -> None:
    """Fuzz for FUZZ_SECONDS (default 60); crashes are written to .cache/fuzz/<name>/crashes/.

    An input that takes more than `timeout` seconds is a finding too.

    The corpus of interesting inputs persists in .cache/fuzz/<name>/corpus/ between runs, seeded
    the first time. Extra libFuzzer flags may follow on the command line.
    """
    import atheris

    corpus = WORK / name / "corpus"
    crashes = WORK / name / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    if not corpus.is_dir():
        corpus.mkdir(parents=True)
        for number, seed in enumerate(seeds):
            (corpus / f"seed-{number:04d}").write_bytes(seed)
    seconds = int(os.environ.get("FUZZ_SECONDS", "60"))
    argv = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-artifact_prefix={crashes}/",
        "-rss_limit_mb=2048",  # the same order as a Lambda function's memory; an unbounded allocation fails here
        f"-timeout={timeout}",  # seconds for one input: a hang is a finding too
        "-max_len=262144",
        *sys.argv[1:],
        str(corpus),
    ]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
