"""Native `DeformConv` from the decomposed deformable convolutions of `deform-conv2d-onnx-exporter`.

That exporter (PyPI, 1.2.0) has no native op to emit for torchvision's `deform_conv2d`, so it
spells each one as a chain of plain ops: the offsets are added to a constant sampling grid,
floored and clipped into a zero-padded copy of the input, four `GatherND` read the corners, the
bilinear weights multiply them, a `Sum` adds them, the mask multiplies, a Reshape/Transpose lays
the samples out as `kh x kw` tiles and a `Conv` with stride = kernel applies the weights; a bias
`Add` follows. At BiRefNet-lite's sizes the four gathered tensors of one layer are ~822 MB each.

`rewrite_model` finds each such chain by its structure (chain_match), derives the geometry it
implies (kernel, stride, dilation, padding, groups; chain_geometry), checks every constant the
chain depends on against what a deformable convolution of that geometry uses, and replaces the
chain with one ONNX `DeformConv` (opset 19; chain_replace) only when everything matches exactly.
Anything else is left as it is: a chain that differs in one constant, a pad mode, a wiring or an
intermediate used elsewhere is not rewritten.

Why the chain equals `DeformConv` when the checks pass: the grid holds `i*stride + k*dilation + a`
in a copy of the input padded by `P >= 1` on each side, so a sample lands at input coordinate
`grid + offset - P`, i.e. a deformable convolution with padding `P - a`. Clipping the corner
indices to the padded extent sends every corner outside the input onto the zero border, which
is the zero that `DeformConv` (and torchvision) give samples outside the input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx

from handler.core.bake.chain import ChainMatch, ChainMismatch, DeformLayer
from handler.core.bake.chain_match import match_chain
from handler.core.bake.chain_replace import prune, replace_chains
from handler.core.bake.onnx_index import DEFAULT_DOMAINS, GraphIndex, all_nodes
from handler.core.bake.weights_aside import check_without_weights, copy_model, put_weights, without_weights

TARGET_OPSET = 19  # the first opset with DeformConv


class RewriteRefused(Exception):
    """The model as a whole cannot be rewritten (its opset cannot be raised, or it is not a plain export)."""


@dataclass
class RewriteResult:
    """What a rewrite did: the chains seen, the ones rewritten, and the opset change."""

    candidates: int
    layers: list[DeformLayer] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    opset_from: int = 0
    opset_to: int = 0

    @property
    def rewritten(self) -> int:
        return len(self.layers)

    def summary(self) -> dict[str, object]:
        return {
            "candidates": self.candidates,
            "rewritten": self.rewritten,
            "opset_from": self.opset_from,
            "opset_to": self.opset_to,
            "skipped": self.skipped,
            "layers": [asdict(layer) for layer in self.layers],
        }


def rewrite_file(source: Path, target: Path) -> RewriteResult:
    """Rewrite `source` into `target` (written only when at least one chain was rewritten)."""
    model = onnx.load(str(source))
    rewritten, result = rewrite_model(model)
    if result.rewritten:
        onnx.save(rewritten, str(target))
    return result


def rewrite_model(model: onnx.ModelProto) -> tuple[onnx.ModelProto, RewriteResult]:
    """The model with every exactly matching chain replaced by `DeformConv`, at opset 19.

    Raises RewriteRefused when the model's opset cannot be raised to 19 or it holds nodes outside
    the default ONNX domain (an onnxruntime-optimised file: its fused ops are not the exporter's
    chains and have no opset conversion). Chains that do not match are listed in `skipped`.
    """
    foreign = sorted({node.domain for node in all_nodes(model.graph) if node.domain not in DEFAULT_DOMAINS})
    if foreign:
        raise RewriteRefused(f"nodes outside the default ONNX domain ({', '.join(foreign)}): not a plain export")
    opset_from = _default_opset(model)
    candidates = GraphIndex(model.graph).candidate_count()
    result = RewriteResult(candidates=candidates, opset_from=opset_from, opset_to=opset_from)
    if candidates == 0:
        return model, result
    # The work is done on a copy without the weights (weights_aside), which reads any constant it
    # needs from `model`'s own tensors and gets the weights back at the end.
    originals = {tensor.name: tensor for tensor in model.graph.initializer}
    upgraded = _upgrade(without_weights(model), opset_from)
    result.opset_to = _default_opset(upgraded)
    graph = GraphIndex(upgraded.graph, originals)
    matches: list[ChainMatch] = []
    for index, node in enumerate(upgraded.graph.node):
        if node.op_type != "Conv" or node.domain not in DEFAULT_DOMAINS:
            continue
        try:
            matches.append(match_chain(graph, index))
        except ChainMismatch as why:
            if graph.feeds_from_gather(index):
                result.skipped.append(f"{node.name or node.output[0]}: {why}")
    if not matches:
        return model, result
    replace_chains(upgraded, matches)
    prune(upgraded.graph)
    check_without_weights(upgraded)
    put_weights(upgraded, originals)
    result.layers = [m.layer for m in matches]
    return upgraded, result


def _default_opset(model: onnx.ModelProto) -> int:
    for opset in model.opset_import:
        if opset.domain in DEFAULT_DOMAINS:
            return int(opset.version)
    raise RewriteRefused("the model imports no default-domain opset")


def _upgrade(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The model at opset 19, every op adapted by onnx's version converter, or RewriteRefused."""
    if opset >= TARGET_OPSET:
        return copy_model(model)
    from onnx import version_converter

    try:
        upgraded = version_converter.convert_version(model, TARGET_OPSET)
    except Exception as error:  # the converter raises RuntimeError/ValueError for ops it has no adapter for
        raise RewriteRefused(f"cannot raise the opset from {opset} to {TARGET_OPSET}: {error}") from error
    if _default_opset(upgraded) != TARGET_OPSET:
        raise RewriteRefused(f"the opset conversion ended at {_default_opset(upgraded)}, not {TARGET_OPSET}")
    upgraded.ir_version = max(upgraded.ir_version, 9)  # IR 9 is opset 19's
    return upgraded
