"""A model's contract — what it returns, how its input is normalised, its input size — as the model says it.

Each part comes from, in this order: an explicit setting (MODEL_OUTPUT, MODEL_MEAN, MODEL_STD,
MODEL_INPUT_SIZE, or a `ModelSpec` given in code); the bake manifest beside the file, which
records the contract the model was baked with (so a swapped model's image needs no settings of its
own, and a cold start reads no 224 MB graph); the graph itself; the defaults (BiRefNet's: logits,
ImageNet statistics, 1024 for a dynamic input).

An explicit MODEL_OUTPUT=logits for a graph whose output is bounded to [0, 1] is refused: the
sigmoid of such values is 0.5..0.73, so every cutout would be half transparent, and nothing can
make that setting right. It is an error rather than a warning because the functions log to
CloudWatch, where a warning goes unread while every output is wrong. MODEL_OUTPUT=probabilities
for an unbounded output is allowed: a graph can normalise its output in ways no op reveals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from handler.core.errors import ConfigurationError
from handler.core.model.graph_output import bounding_op, read_graph
from handler.core.model.settings import IMAGENET_MEAN, IMAGENET_STD, MODEL_OUTPUTS, ModelOutput, ModelSpec
from handler.core.model.store import MANIFEST, manifest_for

# The bake manifest's key for the contract (handler.core.bake.run writes it).
MANIFEST_KEY = "contract"

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class ModelContract:
    output: ModelOutput
    # The op that bounds the graph's output to [0, 1] ("Sigmoid"...), or None.
    bounded_by: str | None
    mean: RGB
    std: RGB
    # The input side for a graph with dynamic H/W, as set or recorded; None: the default (1024).
    input_size: int | None

    def record(self, *, width: int, height: int, dynamic: bool) -> dict[str, object]:
        """The manifest's entry: this contract and the input size the model runs at."""
        return {
            "output": self.output,
            "bounded_by": self.bounded_by,
            "mean": list(self.mean),
            "std": list(self.std),
            "input": {"width": width, "height": height, "dynamic": dynamic},
        }


def contract_for(spec: ModelSpec, *, path: Path | None, output_name: str) -> ModelContract:
    """`spec`'s explicit values, completed from `path`'s bake manifest or graph (none for a bare session)."""
    recorded = _recorded(path) if path is not None else None
    if recorded is not None:
        bounded_by = recorded.bounded_by
    else:
        graph = read_graph(path) if path is not None else None
        bounded_by = bounding_op(graph, output_name) if graph is not None else None
    if spec.output == "logits" and bounded_by is not None:
        raise ConfigurationError(
            f"MODEL_OUTPUT=logits, but the model's output {output_name!r} comes from {bounded_by}, so it is a "
            "probability in [0, 1] already: a sigmoid on it would make every pixel 50-73% opaque. "
            "Unset MODEL_OUTPUT (the model says what it returns) or set it to probabilities"
        )
    output: ModelOutput
    if spec.output is not None:
        output = spec.output
    elif recorded is not None:
        output = recorded.output
    else:
        output = "probabilities" if bounded_by is not None else "logits"
    return ModelContract(
        output=output,
        bounded_by=bounded_by,
        mean=spec.mean or (recorded.mean if recorded else IMAGENET_MEAN),
        std=spec.std or (recorded.std if recorded else IMAGENET_STD),
        input_size=spec.input_size or (recorded.input_size if recorded else None),
    )


@dataclass(frozen=True)
class _Recorded:
    output: ModelOutput
    bounded_by: str | None
    mean: RGB
    std: RGB
    input_size: int | None


def _recorded(path: Path) -> _Recorded | None:
    """The contract the manifest beside `path` records for it; None when there is none (older bakes).

    A manifest we wrote that does not parse is an error, not a reason to guess: it travels with the
    image, and a guess could be the half-transparent cutout this module exists to prevent.
    """
    manifest = manifest_for(path)
    entry = None if manifest is None else manifest.get(MANIFEST_KEY)
    if entry is None:
        return None
    try:
        return _parsed(entry)
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigurationError(
            f"{path.parent / MANIFEST} has a malformed {MANIFEST_KEY!r} entry: {entry!r}"
        ) from error


def _parsed(entry: object) -> _Recorded:
    if not isinstance(entry, dict):
        raise TypeError("not an object")
    output, bounded_by, size = entry["output"], entry["bounded_by"], entry["input"]
    if output not in MODEL_OUTPUTS or not (bounded_by is None or isinstance(bounded_by, str)):
        raise ValueError("output or bounded_by")
    if not isinstance(size["dynamic"], bool) or not isinstance(size["width"], int):
        raise ValueError("input")
    return _Recorded(
        output=output,
        bounded_by=bounded_by,
        mean=_rgb(entry["mean"]),
        std=_rgb(entry["std"]),
        input_size=size["width"] if size["dynamic"] else None,
    )


def _rgb(values: object) -> RGB:
    if not isinstance(values, list) or len(values) != 3:
        raise ValueError("three numbers")
    red, green, blue = (float(value) for value in values)
    return red, green, blue
