"""Native DeformConv vs the exporter's decomposed chains, on a stand-in with BiRefNet-lite's layers.

Usage::

    make fixtures                                # once: the dev-only torch venv (.venv-fixtures)
    .venv/bin/python benchmarks/deform_standin.py [--size 1024] [--runs 2]

The stand-in (built with torch + torchvision + deform-conv2d-onnx-exporter in .venv-fixtures, the
exporter of the public BiRefNet files, at opset 17 like them) has BiRefNet-lite's decoder: five
decoder blocks (the squeeze block and blocks 4..1, at 1/32, 1/32, 1/16, 1/8 and 1/4 of the input),
each a 3x3 conv to 64 channels and an ASPPDeformable — four modulated deformable convolutions
64 -> 256 with kernels 1, 1, 3 and 7 (padding k//2, offsets and mask from convolutions of the
input, as BiRefNet's DeformableConv2d), a global-pool branch, a 1x1 fusion — so 20 deformable
convolutions, the largest a 7x7 on 64 channels at 256x256 for a 1024x1024 input. The backbone is
replaced by convolution stages with Swin-T's channels (96, 192, 384, 768) and depths (2, 2, 6, 2)
and about its multiply-adds; weights are random; a centred subject is added to the logits so the
mask is photo-like (for the pipeline's cost around the model).

Measured, each in a fresh process (peak RSS is a high-water mark), before and after alternating
and the fastest steady run kept (the machine is shared), with the service's session options: the decomposed graph as the bake kept it before (pre-optimised original) and as it bakes
it now (`python -m handler download --output`: rewritten, checked, pre-optimised), at 1 and 2
threads; outputs compared on a sample photo; the bake's own time with and without the rewrite;
the whole pipeline on a 12 MP photo against the bare model run (benchmarks/pipeline.py's
measure). Then the Lambda sizing table (benchmarks/threads.py's Amdahl fit, from these runs).

Prints markdown tables and writes benchmarks/results/deform.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measure import (
    RESULTS,
    ROOT,
    SAMPLES,
    machine_info,
    peak_rss_mb,
    run_child,
    twelve_megapixel_jpeg,
    write_json,
)

SCRIPT = Path(__file__).resolve()
WORK = RESULTS / "work"
FIXTURES_PYTHON = ROOT / ".venv-fixtures" / "bin" / "python"
MEMORY_SIZES_MB = (3008, 3584, 4096, 5120, 6144, 8192, 10240)
# Lambda x86_64, us-east-1 (as in benchmarks/threads.py).
PRICE_PER_GB_SECOND = 0.0000166667
PRICE_PER_REQUEST = 0.20 / 1_000_000
# Above the model's peak: the largest photo's share of the function's peak (~0.25 GB for 64 MP, whose
# cutout is made after the model's working memory is handed back; benchmarks/lambda_memory.py) and
# as much again for what varies between runs and between the stand-in and the real network.
HEADROOM_MB = 512


# -- the stand-in (torch side: runs in .venv-fixtures) ---------------------------------------------


def build(path: Path, size: int) -> None:
    import deform_conv2d_onnx_exporter as exporter
    import torch
    import torch.nn.functional as F  # noqa: N812 - torch's own spelling
    from torch import nn
    from torchvision.ops import deform_conv2d

    torch.manual_seed(0)

    class DeformableConv2d(nn.Module):
        """BiRefNet's: offsets and a 2*sigmoid mask predicted by convolutions of the input."""

        def __init__(self, cin: int, cout: int, k: int) -> None:
            super().__init__()
            self.padding = k // 2
            self.offset_conv = nn.Conv2d(cin, 2 * k * k, k, padding=self.padding)
            self.modulator_conv = nn.Conv2d(cin, k * k, k, padding=self.padding)
            self.regular_conv = nn.Conv2d(cin, cout, k, padding=self.padding, bias=False)
            nn.init.normal_(self.offset_conv.weight, std=0.02)  # offsets of about a pixel

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return deform_conv2d(
                x,
                self.offset_conv(x),
                self.regular_conv.weight,
                self.regular_conv.bias,
                padding=self.padding,
                mask=2.0 * torch.sigmoid(self.modulator_conv(x)),
            )

    def hw(x: torch.Tensor) -> tuple[int, int]:
        # Plain ints, frozen at the traced size as in the public export: the exporter needs static
        # input sizes for its chains.
        return int(x.shape[2]), int(x.shape[3])

    def bn_relu(c: int) -> nn.Module:
        return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())

    class ASPPDeformable(nn.Module):
        def __init__(self, cin: int = 64, planes: int = 256) -> None:
            super().__init__()
            self.branches = nn.ModuleList(
                nn.Sequential(DeformableConv2d(cin, planes, k), bn_relu(planes)) for k in (1, 1, 3, 7)
            )
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, planes, 1, bias=False), bn_relu(planes))
            self.fuse = nn.Sequential(nn.Conv2d(planes * 5, cin, 1, bias=False), bn_relu(cin))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pooled = F.interpolate(self.pool(x), size=hw(x), mode="bilinear", align_corners=True)
            return self.fuse(torch.cat([*(b(x) for b in self.branches), pooled], dim=1))

    class DecoderBlock(nn.Module):  # BiRefNet's BasicDecBlk
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.conv_in = nn.Sequential(nn.Conv2d(cin, 64, 3, padding=1), bn_relu(64))
            self.att = ASPPDeformable(64)
            self.conv_out = nn.Sequential(nn.Conv2d(64, cout, 3, padding=1), nn.BatchNorm2d(cout))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv_out(self.att(self.conv_in(x)))

    class Stage(nn.Module):
        """Swin-T-like cost without attention: per block a 1x1 MLP of ratio 6 (~the multiply-adds
        of a Swin block's projections and MLP), residual."""

        def __init__(self, cin: int, c: int, depth: int, stride: int) -> None:
            super().__init__()
            self.down = nn.Conv2d(cin, c, stride, stride=stride)
            self.blocks = nn.ModuleList(
                nn.Sequential(nn.Conv2d(c, 6 * c, 1), nn.GELU(), nn.Conv2d(6 * c, c, 1)) for _ in range(depth)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.down(x)
            for block in self.blocks:
                x = x + block(x)
            return x

    class StandIn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            channels = (96, 192, 384, 768)
            self.stages = nn.ModuleList(
                [
                    Stage(3, 96, 2, 4),
                    Stage(96, 192, 2, 2),
                    Stage(192, 384, 6, 2),
                    Stage(384, 768, 2, 2),
                ]
            )
            self.squeeze = DecoderBlock(768 + 96 + 192 + 384, 768)
            self.block4 = DecoderBlock(768, 384)
            self.block3 = DecoderBlock(384, 192)
            self.block2 = DecoderBlock(192, 96)
            self.block1 = DecoderBlock(96, 48)
            self.lateral = nn.ModuleList(nn.Conv2d(c, c, 1) for c in channels[:3][::-1])
            self.head = nn.Conv2d(48, 1, 1)
            # A photo-like mask (heavy_graph's centred subject with soft edges) under the random
            # network's own faint texture, so that the pipeline's cost around the model (refine
            # band, PNG size) is that of a real cutout.
            from benchmarks.heavy_graph import _subject_logits

            self.register_buffer("subject", torch.from_numpy(_subject_logits(size)))

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x1 = self.stages[0](image)
            x2 = self.stages[1](x1)
            x3 = self.stages[2](x2)
            x4 = self.stages[3](x3)
            at = hw(x4)
            context = [F.interpolate(x, size=at, mode="bilinear", align_corners=True) for x in (x1, x2, x3)]
            p = self.squeeze(torch.cat([x4, *context], dim=1))
            p = self.block4(p)
            for block, lateral, skip in zip(
                (self.block3, self.block2, self.block1), self.lateral, (x3, x2, x1), strict=True
            ):
                p = F.interpolate(p, size=hw(skip), mode="bilinear", align_corners=True)
                p = block(p + lateral(skip))
            p = F.interpolate(p, size=hw(image), mode="bilinear", align_corners=True)
            return 0.25 * self.head(p) + self.subject

    if exporter.JitScalarType is None:  # see scripts/make_deform_fixtures.py
        from torch.onnx._internal.torchscript_exporter._type_utils import JitScalarType

        exporter.JitScalarType = JitScalarType
    exporter.register_deform_conv2d_onnx_op()
    net = StandIn().eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            net,
            (torch.randn(1, 3, size, size),),
            str(path),
            opset_version=17,
            input_names=["input_image"],
            output_names=["output_image"],
            do_constant_folding=True,
            dynamo=False,
        )


# -- measuring (project venv) --------------------------------------------------------------------


def child_run(model_path: str, threads: int, runs: int, output: str) -> dict[str, Any]:
    """Session creation, first and steady runs on a sample photo, peak RSS; the logits saved."""
    import numpy as np
    import onnxruntime as ort
    from PIL import Image

    from handler.core.model.session import BackgroundModel, session_options

    with Image.open(SAMPLES / "astronaut.jpg") as image:
        rgb = image.convert("RGB")
    started = time.perf_counter()
    session = ort.InferenceSession(
        model_path, sess_options=session_options(threads), providers=["CPUExecutionProvider"]
    )
    create_s = time.perf_counter() - started
    model = BackgroundModel(session)
    feeds = {model.input_name: model.preprocess(rgb)}
    started = time.perf_counter()
    (logits,) = session.run([model.output_name], feeds)
    first_s = time.perf_counter() - started
    steady = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run([model.output_name], feeds)
        steady.append(time.perf_counter() - started)
    np.save(output, logits)
    return {
        "threads": threads,
        "create_s": create_s,
        "first_s": first_s,
        "run_s": statistics.median(steady),
        "all_s": steady,
        "peak_mb": peak_rss_mb(),
    }


def _bake(model: Path, folder: Path, *, rewrite: bool) -> tuple[dict[str, Any], float]:
    """The build step's own code; without the rewrite, as it baked before (onnx made unimportable).

    A bake of this very stand-in already in `folder` is reused (with its recorded time): re-measuring
    the models on a busier machine then costs no second bake."""
    timing = folder / "bake_seconds.json"
    if timing.exists() and (folder / "model.json").exists():
        manifest = json.loads((folder / "model.json").read_text())
        recorded = json.loads(timing.read_text())
        if recorded["source_bytes"] == model.stat().st_size and recorded["source_mtime_ns"] == model.stat().st_mtime_ns:
            return manifest, recorded["seconds"]
    code = "import sys\nfrom handler.local.cli import main\nsys.exit(main(sys.argv[1:]))"
    if not rewrite:
        code = "import sys\nsys.modules['onnx'] = None\n" + code
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, "download", "--output", str(folder)],
        check=True,
        cwd=ROOT,
        env={**os.environ, "MODEL_PATH": str(model)},
        capture_output=True,
    )
    seconds = time.perf_counter() - started
    timing.write_text(
        json.dumps(
            {"seconds": seconds, "source_bytes": model.stat().st_size, "source_mtime_ns": model.stat().st_mtime_ns}
        )
    )
    return json.loads((folder / "model.json").read_text()), seconds


def _quiet_parallel_fraction() -> float:
    """Amdahl's parallel fraction from benchmarks/threads.py's run of the heavy stand-in (1 and 2 threads)."""
    runs = {m["threads"]: m["run_s"] for m in json.loads((RESULTS / "threads.json").read_text())["threads"]}
    return min(1.0, max(0.0, 2.0 * (1.0 - runs[2] / runs[1])))


def sizing(measured: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Time per image on each Lambda memory size: Amdahl's law fitted to each graph's 1 and 2-thread
    runs, scaled from its 2-thread time. Two threads no faster than one (by 10%) means the machine
    was too busy for a fit: threads.py's fit is used then, and the row says so."""
    rows = []
    for export, by_threads in measured.items():
        one, two = by_threads[1]["run_s"], by_threads[2]["run_s"]
        if two < one / 1.1:
            parallel, fitted = min(1.0, max(0.0, 2.0 * (1.0 - two / one))), "these runs"
        else:
            parallel, fitted = _quiet_parallel_fraction(), "threads.py (these runs were too busy to fit)"
        peak = max(m["peak_mb"] for m in by_threads.values())
        for memory in MEMORY_SIZES_MB:
            vcpus = min(6.0, memory / 1769)
            seconds = two * ((1 - parallel) + parallel / vcpus) / ((1 - parallel) + parallel / 2)
            fits = peak + HEADROOM_MB <= memory
            cost = seconds * memory / 1024 * PRICE_PER_GB_SECOND + PRICE_PER_REQUEST
            rows.append(
                {
                    "export": export,
                    "peak_mb": round(peak),
                    "parallel_fraction": round(parallel, 3),
                    "fitted_on": fitted,
                    "memory_mb": memory,
                    "vcpus": round(vcpus, 2),
                    "seconds": round(seconds, 2),
                    "fits": fits,
                    "usd_per_1000_images": round(cost * 1000, 3) if fits else None,
                }
            )
    return rows


def _tables(report: dict[str, Any]) -> list[str]:
    bake = report["bake"]
    lines = [
        "| graph | threads | session creation (s) | first run (s) | steady run (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in report["measured"].items():
        for m in runs:
            lines.append(
                f"| {name} | {m['threads']} | {m['create_s']:.2f} | {m['first_s']:.2f} | {m['run_s']:.2f} | {m['peak_mb']:.0f} |"
            )
    lines += [
        "",
        f"native / decomposed at 2 threads: time {report['time_ratio']:.2f}x, peak {report['peak_ratio']:.2f}x; "
        f"outputs: max logit difference {report['outputs']['max_logit_difference']:.2g}, "
        f"max probability difference {report['outputs']['max_probability_difference']:.2g}",
        f"12 MP pipeline / bare model run (native): {report['pipeline_12mp']['ratio']:.3f}x "
        f"({report['pipeline_12mp']['pipeline_s']:.2f} s vs {report['pipeline_12mp']['session_run_s']:.2f} s)",
        f"bake: {bake['before_s']:.1f} s before, {bake['after_s']:.1f} s with the rewrite (+{bake['added_s']:.1f} s: "
        f"rewrite {bake['rewrite_s']} s, check {bake['check']['original_seconds']} + {bake['check']['rewritten_seconds']} s "
        f"on {len(bake['check']['probes'])} photos, {bake['check'].get('layout', 'one run each')}); {bake['reason']}",
        "",
        "| export | peak (MB) | memory (MB) | vCPUs | s / image | fits | USD / 1000 images | Amdahl fit from |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["lambda_sizing"]:
        cost = f"{row['usd_per_1000_images']:.3f}" if row["fits"] else "—"
        lines.append(
            f"| {row['export']} | {row['peak_mb']} | {row['memory_mb']} | {row['vcpus']} | {row['seconds']} | "
            f"{'yes' if row['fits'] else 'no'} | {cost} | {row['fitted_on']} |"
        )
    machine = report["machine"]
    lines.append(f"\nMachine: {machine['cpu_count']} x {machine['cpu_model']}, load {machine['loadavg_1_5_15']}.")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=2, help="steady runs per child")
    parser.add_argument("--rounds", type=int, default=2, help="children per graph and thread count, alternating")
    parser.add_argument("--build", type=Path, help="(torch venv) write the stand-in to this path")
    parser.add_argument("--child", nargs="+")
    parser.add_argument("--report-only", action="store_true", help="recompute the sizing and tables from deform.json")
    args = parser.parse_args(argv)
    if args.build:
        build(args.build, args.size)
        return
    if args.child:
        model, threads, runs, output = args.child
        print(json.dumps(child_run(model, int(threads), int(runs), output)))
        return
    if args.report_only:
        report = json.loads((RESULTS / "deform.json").read_text())
        measured = {name: {m["threads"]: m for m in runs} for name, runs in report["measured"].items()}
        report["lambda_sizing"] = sizing(measured)
        write_json(RESULTS / "deform.json", report)
        print("\n".join(_tables(report)))
        return

    import numpy as np

    WORK.mkdir(parents=True, exist_ok=True)
    source = WORK / f"deform_standin_{args.size}.onnx"
    if not source.exists():
        if not FIXTURES_PYTHON.exists():
            raise SystemExit("the stand-in is made with torch: run `make fixtures` first")
        subprocess.run(
            [str(FIXTURES_PYTHON), str(SCRIPT), "--build", str(source), "--size", str(args.size)], check=True
        )
    before_manifest, before_bake_s = _bake(source, WORK / "deform_before", rewrite=False)
    after_manifest, after_bake_s = _bake(source, WORK / "deform_after", rewrite=True)
    models = {
        "decomposed (baked before)": WORK / "deform_before" / "model.onnx",
        "native DeformConv (baked now)": WORK / "deform_after" / "model.onnx",
    }
    # Before and after alternate, twice, and each keeps its fastest steady run: this machine is
    # shared, and a load spike during one graph's turn would otherwise read as that graph's cost.
    rounds: dict[str, dict[int, list[dict[str, Any]]]] = {name: {2: [], 1: []} for name in models}
    for _ in range(args.rounds):
        for threads in (2, 1):
            for index, (name, path) in enumerate(models.items()):
                rounds[name][threads].append(
                    run_child(
                        SCRIPT,
                        str(path),
                        str(threads),
                        str(args.runs),
                        str(WORK / f"logits_{index}_{threads}.npy"),
                        timeout=1800,
                    )
                )
    measured = {
        name: {
            threads: {
                **min(runs, key=lambda m: m["run_s"]),
                "peak_mb": max(m["peak_mb"] for m in runs),
                "rounds_run_s": [m["run_s"] for m in runs],
            }
            for threads, runs in by_threads.items()
        }
        for name, by_threads in rounds.items()
    }
    before_logits, after_logits = (np.load(WORK / f"logits_{i}_2.npy") for i in (0, 1))
    sigmoid = lambda x: 0.5 * (np.tanh(0.5 * x) + 1.0)  # noqa: E731
    agreement = {
        "max_logit_difference": float(np.abs(before_logits - after_logits).max()),
        "max_probability_difference": float(np.abs(sigmoid(before_logits) - sigmoid(after_logits)).max()),
    }
    photo = twelve_megapixel_jpeg(WORK / "photo_12mp.jpg")
    pipeline = run_child(
        ROOT / "benchmarks" / "pipeline.py",
        "ratio",
        str(models["native DeformConv (baked now)"]),
        str(photo),
        "3",
        timeout=1800,
    )
    before, after = (measured[name][2] for name in models)
    deform = after_manifest["native_deform"]
    report = {
        "machine": machine_info(),
        "size": args.size,
        "stand_in_bytes": source.stat().st_size,
        "measured": {name: list(by_threads.values()) for name, by_threads in measured.items()},
        "time_ratio": after["run_s"] / before["run_s"],
        "peak_ratio": after["peak_mb"] / before["peak_mb"],
        "outputs": agreement,
        "pipeline_12mp": pipeline,
        "bake": {
            "before_s": before_bake_s,
            "after_s": after_bake_s,
            "added_s": after_bake_s - before_bake_s,
            "rewrite_s": deform["rewrite_seconds"],
            "check": deform["check"],
            "applied": deform["applied"],
            "reason": deform["reason"],
            "rewritten": deform["rewrite"]["rewritten"] if deform["rewrite"] else None,
            "preoptimised_before": before_manifest["preoptimised"],
            "preoptimised_after": after_manifest["preoptimised"],
        },
        "lambda_sizing": sizing(measured),
    }
    write_json(RESULTS / "deform.json", report)

    print("\n".join(_tables(report)))


if __name__ == "__main__":
    main()
