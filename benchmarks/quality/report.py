"""Cutout quality with the real U-2-Net-p on photos of known alpha: mask and edge colour figures.

Usage::

    .venv/bin/python benchmarks/quality/report.py

Cases (composites I = alpha*F + (1 - alpha)*B whose true alpha and F are known by construction):

- synthetic subjects (tests/composites.py): hair-like, motion-blurred and anti-aliased alphas with
  smooth subject colours, over each sample photo as background;
- real subjects: each sample photo's own subject (its pixels as F, U-2-Net-p's mask of the
  original photo as alpha) pasted onto another sample photo. The model's mask of the new photo
  is compared with that alpha, so these cases favour the model (it made the alpha itself): read
  them as "does it find the same subject on another background", not as matting accuracy.

For each case: the model's mask against the true alpha (mean absolute error in 0-255 levels, IoU
of alpha >= 0.5), and the edge colour error (mean absolute difference from the true F, 0-255,
over the channels) without and with refine, both with the true alpha (the estimator alone) and
with the model's alpha (end to end, over the pixels where that alpha is partial and the true one
is not 0). One PNG per case, benchmarks/quality/<case>.png: input, the model's mask, the refined
cutout on a checkerboard, and on a plain colour unrefined and refined, side by side.

Writes benchmarks/quality/results.json and results.md (the table).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from fetch_u2netp import ensure_u2netp  # noqa: E402

from benchmarks.measure import machine_info  # noqa: E402
from handler.core.image.compose import compose_cutout  # noqa: E402
from handler.core.image.decode import Picture  # noqa: E402
from handler.core.image.refine import refine_foreground  # noqa: E402
from handler.core.model.session import BackgroundModel  # noqa: E402
from handler.core.model.settings import ModelSpec  # noqa: E402
from handler.local.background import mask  # noqa: E402
from tests.composites import BACKGROUNDS, SAMPLES, Composite, background, cases, compose  # noqa: E402

HERE = Path(__file__).resolve().parent
SIZE = (640, 480)
PANEL = (256, 192)
BACKDROP = (40, 170, 90)  # a colour none of the backgrounds has much of, so halos show
CHECKER = 16
MAX_PNG_BYTES = 300_000
# Each real subject onto the next sample photo.
REAL_PAIRS = [("astronaut", "coffee"), ("chelsea", "astronaut"), ("coffee", "chelsea")]


def real_subject_cases(model: BackgroundModel) -> list[Composite]:
    made = []
    for subject, onto in REAL_PAIRS:
        photo = Image.fromarray(background(subject, SIZE).astype(np.uint8))
        alpha = np.asarray(mask(photo, model=model), dtype=np.float64) / 255
        made.append(
            compose(f"real-{subject}-on-{onto}", alpha, np.asarray(photo, dtype=np.float64), background(onto, SIZE))
        )
    return made


def _cutout(colour: Image.Image, alpha: Image.Image) -> Image.Image:
    return compose_cutout(Picture(rgb=colour, alpha=None, icc_profile=None), alpha)


def _colour_error(colour: Image.Image, truth: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(np.asarray(colour, dtype=np.float64)[where] - truth[where]).mean())


def measure(case: Composite, model: BackgroundModel) -> tuple[dict[str, Any], Image.Image]:
    predicted = mask(case.image, model=model)
    guess = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(case.alpha, dtype=np.float64)
    union = ((guess >= 128) | (truth >= 128)).sum()
    refined_true = refine_foreground(case.image, case.alpha)
    refined_model = refine_foreground(case.image, predicted)
    model_band = (guess > 0) & (guess < 255) & (truth > 0)
    row: dict[str, Any] = {
        "case": case.name,
        "mask_mae": float(np.abs(guess - truth).mean()),
        "iou_at_0_5": float(((guess >= 128) & (truth >= 128)).sum() / union) if union else 1.0,
        "band_share": float(case.band().mean()),
        "edge_error_true_alpha": None,
        "edge_error_model_alpha": None,
    }
    # A real subject's own edge pixels are already blends with its first background, so its F is
    # no ground truth for edge colour: those cases report the mask figures only.
    if not case.name.startswith("real-"):
        row["edge_error_true_alpha"] = {
            "unrefined": case.band_error(case.image),
            "refined": case.band_error(refined_true),
        }
        row["edge_error_model_alpha"] = {
            "unrefined": _colour_error(case.image, case.foreground, model_band),
            "refined": _colour_error(refined_model, case.foreground, model_band),
        }
    return row, _sheet(case.image, predicted, _cutout(case.image, predicted), _cutout(refined_model, predicted))


def _sheet(photo: Image.Image, alpha: Image.Image, plain: Image.Image, refined: Image.Image) -> Image.Image:
    """input | mask | refined on a checkerboard | unrefined on a colour | refined on a colour."""
    checker = Image.new("RGB", photo.size, (255, 255, 255))
    draw = ImageDraw.Draw(checker)
    for top in range(0, photo.height, CHECKER):
        for left in range((top // CHECKER % 2) * CHECKER, photo.width, 2 * CHECKER):
            draw.rectangle((left, top, left + CHECKER - 1, top + CHECKER - 1), fill=(200, 200, 200))
    panels = [photo, alpha.convert("RGB"), Image.alpha_composite(checker.convert("RGBA"), refined).convert("RGB")]
    zoom = _subject_box(alpha)
    for cutout in (plain, refined):
        on_colour = Image.new("RGB", photo.size, BACKDROP)
        on_colour.paste(cutout, mask=cutout.getchannel("A"))
        panels.append(on_colour.crop(zoom))
    labels = ["input", "U-2-Net-p mask", "refined cutout", "unrefined, on colour (zoom)", "refined, on colour (zoom)"]
    sheet = Image.new("RGB", (PANEL[0] * len(panels), PANEL[1] + 16), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, (panel, label) in enumerate(zip(panels, labels, strict=False)):
        sheet.paste(panel.resize(PANEL, Image.Resampling.LANCZOS), (index * PANEL[0], 16))
        draw.text((index * PANEL[0] + 4, 2), label, fill=(0, 0, 0))
    return sheet


def _subject_box(alpha: Image.Image) -> tuple[int, int, int, int]:
    """A box of the panels' aspect ratio around the mask's subject, with a margin: a closer look at the edges."""
    left, top, right, bottom = alpha.point([0] * 128 + [255] * 128).getbbox() or (0, 0, *alpha.size)
    width = max(right - left, (bottom - top) * PANEL[0] / PANEL[1]) * 1.15
    width = min(width, alpha.width, alpha.height * PANEL[0] / PANEL[1])
    height = width * PANEL[1] / PANEL[0]
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    x = min(max(0, centre_x - width / 2), alpha.width - width)
    y = min(max(0, centre_y - height / 2), alpha.height - height)
    return round(x), round(y), round(x + width), round(y + height)


def _save_small(image: Image.Image, path: Path) -> None:
    """PNG; quantised to a 256-colour palette when the full-colour file would exceed MAX_PNG_BYTES."""
    image.save(path, optimize=True)
    if path.stat().st_size > MAX_PNG_BYTES:
        image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| case | mask MAE | IoU@0.5 | edge error, true alpha: unrefined → refined | edge error, model's alpha: unrefined → refined |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        edges = [_change(row["edge_error_true_alpha"]), _change(row["edge_error_model_alpha"])]
        lines.append(f"| {row['case']} | {row['mask_mae']:.1f} | {row['iou_at_0_5']:.3f} | {edges[0]} | {edges[1]} |")
    return "\n".join(lines)


def _change(errors: dict[str, float] | None) -> str:
    if errors is None:
        return "—"
    return f"{errors['unrefined']:.1f} → {errors['refined']:.1f} ({errors['refined'] / errors['unrefined']:.2f}x)"


def main() -> None:
    model = BackgroundModel.load(ensure_u2netp(), ModelSpec(output="probabilities"), threads=2)
    rows = []
    for case in cases(SIZE, BACKGROUNDS) + real_subject_cases(model):
        row, sheet = measure(case, model)
        _save_small(sheet, HERE / f"{case.name}.png")
        rows.append(row)
        print(f"{case.name}: done", file=sys.stderr)
    report = {
        "machine": machine_info(),
        "model": "U-2-Net-p (scripts/fetch_u2netp.py), MODEL_OUTPUT=probabilities",
        "size": list(SIZE),
        "samples": str(SAMPLES.relative_to(ROOT)),
        "cases": rows,
    }
    (HERE / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    table = _table(rows)
    (HERE / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
