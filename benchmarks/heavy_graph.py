"""Synthetic ONNX graph with BiRefNet-lite's I/O contract and a realistic cost profile.

The real BiRefNet-lite export is hundreds of MB and needs a download, so benchmarks and
tests that care about *time and memory* (not about mask quality) use this stand-in:

* same contract: ``input_image`` float32 [1,3,H,W] -> ``output_image`` float32
  [1,1,H,W] logits, opset 17;
* a U-Net-style conv encoder/decoder with random (seeded) weights; at 1024x1024 it
  costs ~260 GMAC (~0.5 TFLOP), i.e. ~3 s on 2 CPU cores, like the real model;
* large activations: full-, 1/2- and 1/4-resolution feature maps with skip
  connections kept alive across the network (Concat/Add), bilinear Resize back up,
  so the allocator / memory-pattern behaviour resembles a segmentation net;
* small weights (~12 MB) so it can be generated on the fly in a temp dir;
* logits bounded to [-8, 8] (1x1 conv -> Tanh * 8) so sigmoid(logits) is a
  meaningful, non-saturated-everywhere mask.

Upsampling uses Resize with ``sizes`` taken from the skip tensor's runtime shape, so
the graph also works with dynamic (and odd) H/W, where a fixed scale of 2 would not.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
INPUT_NAME = "input_image"
OUTPUT_NAME = "output_image"
SEED = 20240601


class _GraphBuilder:
    """Tiny helper that appends nodes/initializers and hands out unique names."""

    def __init__(self, seed: int) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self._n = 0

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, prefix: str, value: np.ndarray) -> str:
        name = self._name(prefix)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        out = out or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, relu: bool = True) -> str:
        # He-normal init keeps activation variance roughly constant through depth, so
        # values neither explode to inf nor decay into denormals (which are very slow
        # on x86 and would distort the timing).
        std = np.sqrt(2.0 / (cin * k * k))
        w = self.const("w", (self.rng.standard_normal((cout, cin, k, k)) * std).astype(np.float32))
        b = self.const("b", (self.rng.standard_normal(cout) * 0.01).astype(np.float32))
        pad = k // 2
        y = self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)
        # Conv+Relu is fused by onnxruntime, as it would be for the real export.
        return self.op("Relu", [y]) if relu else y

    def up_to(self, x: str, like: str) -> str:
        # Bilinear upsample of x to like's spatial size (BiRefNet uses
        # F.interpolate(mode="bilinear", align_corners=True)).
        nc = self.op("Slice", [self.op("Shape", [x]), self._i64([0]), self._i64([2])])
        hw = self.op("Slice", [self.op("Shape", [like]), self._i64([2]), self._i64([4])])
        sizes = self.op("Concat", [nc, hw], axis=0)
        return self.op("Resize", [x, "", "", sizes], mode="linear", coordinate_transformation_mode="align_corners")

    def gate(self, x: str, c: int) -> str:
        # Cheap channel-attention-like gating (x * sigmoid(1x1 conv(x))): adds the
        # non-fusible elementwise intermediates real decoders have.
        g = self.op("Sigmoid", [self.conv(x, c, c, k=1, relu=False)])
        return self.op("Mul", [x, g])

    def _i64(self, v: list[int]) -> str:
        return self.const("i", np.array(v, dtype=np.int64))


def _body(g: _GraphBuilder, x: str, subject_size: int | None = None) -> str:
    # ---- encoder: full res (32ch) -> 1/2 (96ch) -> 1/4 (128ch) -> 1/8 (256ch)
    f0 = g.conv(x, 3, 32)  # 1/1, 32ch: 128 MiB per map at 1024^2
    f1 = g.conv(f0, 32, 32)
    f2 = g.conv(f1, 32, 96, stride=2)  # 1/2, 96ch: 96 MiB
    f2 = g.conv(g.conv(f2, 96, 96), 96, 96)
    f3 = g.conv(f2, 96, 128, stride=2)  # 1/4, 128ch: 32 MiB
    f3 = g.conv(g.conv(g.conv(f3, 128, 128), 128, 128), 128, 128)
    f4 = g.conv(f3, 128, 256, stride=2)  # 1/8, 256ch (bottleneck)
    f4 = g.conv(g.conv(f4, 256, 256), 256, 256)

    # ---- decoder: upsample, concat skip, fuse; f0..f3 stay alive until used here,
    # which is what makes segmentation nets memory-hungry.
    d3 = g.op("Concat", [g.up_to(g.conv(f4, 256, 128, k=1), f3), f3], axis=1)  # 256ch @1/4
    d3 = g.gate(g.conv(g.conv(d3, 256, 128), 128, 128), 128)
    d2 = g.op("Concat", [g.up_to(d3, f2), f2], axis=1)  # 224ch @1/2
    d2 = g.gate(g.conv(g.conv(d2, 224, 96), 96, 96), 96)
    # Upsample *before* reducing channels (96ch @1/1 = 384 MiB), as decoders that
    # interpolate feature maps then convolve do. Multi-level fusion: the 1/4-res
    # decoder output is lifted to full res too (128ch @1/1 = 512 MiB), like
    # hypercolumn/FPN-style heads; these transients set the peak.
    d1 = g.op("Add", [g.conv(g.up_to(d2, f1), 96, 32, k=1), f1])  # 32ch @1/1
    d1 = g.op("Add", [g.conv(g.up_to(d3, f1), 128, 32, k=1), d1])
    # BiRefNet re-injects the raw image in its decoder; concat it (and the stem
    # features, kept alive since the start) at full res.
    d1 = g.op("Concat", [d1, f0, x], axis=1)  # 67ch @1/1
    d1 = g.conv(g.conv(g.conv(d1, 67, 32), 32, 32), 32, 16)

    # ---- head: bounded logits so sigmoid(logits) is a usable soft mask.
    logits = g.op("Tanh", [g.conv(d1, 16, 1, k=1, relu=False)])
    if subject_size is None:
        return g.op("Mul", [logits, g.const("scale", np.array(8.0, dtype=np.float32))], out=OUTPUT_NAME)
    # A photo-like mask: a centred subject with soft edges (the random network's own output only
    # adds a faint texture), so that cutouts have the transparent background, opaque subject and
    # thin soft band of a real one — which is what decides their encoding cost and size.
    texture = g.op("Mul", [logits, g.const("texture", np.array(0.25, dtype=np.float32))])
    return g.op("Add", [texture, g.const("subject", _subject_logits(subject_size))], out=OUTPUT_NAME)


def _subject_logits(size: int) -> np.ndarray:
    """Logits of an upright ellipse covering ~40% of the frame, +-10 away from a ~1% wide edge."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size)
    radius = np.sqrt(((x - 0.5) / 0.33) ** 2 + ((y - 0.55) / 0.42) ** 2)
    return np.clip(60.0 * (1.0 - radius), -10.0, 10.0).astype(np.float32).reshape(1, 1, size, size)


def build_heavy_graph(path: str, size: int | None = 1024, dynamic: bool = False, subject: bool = False) -> None:
    """Write the heavy stand-in graph to ``path``.

    ``subject=True`` (fixed sizes only) makes its mask photo-like: a centred subject with soft edges.

    ``size`` fixes H=W (static shapes let onnxruntime plan memory patterns, like a
    fixed-size BiRefNet export); ``dynamic=True`` (or ``size=None``) names the dims
    'height'/'width' instead.
    """
    dims: list[int | str]
    dims = ["height", "width"] if dynamic or size is None else [size, size]
    g = _GraphBuilder(SEED)
    if subject and (dynamic or size is None):
        raise ValueError("subject=True needs a fixed size")
    _body(g, INPUT_NAME, size if subject else None)
    graph = helper.make_graph(
        g.nodes,
        "heavy_birefnet_standin",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, *dims])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, 1, *dims])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # opset 17 era; loadable by any onnxruntime >= 1.13
    onnx.checker.check_model(model)
    onnx.save(model, path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("out", help="output .onnx path")
    p.add_argument("--size", type=int, default=1024, help="fixed H=W (ignored with --dynamic)")
    p.add_argument("--dynamic", action="store_true", help="dynamic 'height'/'width' dims")
    a = p.parse_args(argv)
    build_heavy_graph(a.out, size=a.size, dynamic=a.dynamic)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()


def build_many_node_graph(path: str, size: int = 1024, blocks: int = 400) -> None:
    """A graph with BiRefNet-lite's contract and the *shape* of its default export for loading cost.

    The default export decomposes each deformable convolution into long chains of small nodes
    (shape arithmetic, Gather, Reshape, elementwise maths) around convolutions with BatchNorm:
    thousands of nodes, most of which onnxruntime folds or fuses when it creates the session. This
    stand-in reproduces that: `blocks` residual blocks on a 1/8-resolution feature map, each a
    Conv + BatchNormalization + Relu (fused at load) and a static Shape/Gather/Concat/Reshape chain
    (constant-folded at load). Inference is cheap; session creation is what it measures.
    """
    g = _GraphBuilder(SEED)
    features = g.op("AveragePool", [INPUT_NAME], kernel_shape=[8, 8], strides=[8, 8])
    features = g.conv(features, 3, 16, k=1)
    for _ in range(blocks):
        conv = g.conv(features, 16, 16, k=1, relu=False)
        scale = g.const("bn_scale", np.ones(16, dtype=np.float32))
        bias = g.const("bn_bias", np.zeros(16, dtype=np.float32))
        mean = g.const("bn_mean", (g.rng.standard_normal(16) * 0.01).astype(np.float32))
        var = g.const("bn_var", np.ones(16, dtype=np.float32))
        normalised = g.op("BatchNormalization", [conv, scale, bias, mean, var], epsilon=1e-5)
        shape = g.op("Shape", [normalised])
        dims = [g.op("Gather", [shape, g._i64([axis])], axis=0) for axis in range(4)]
        reshaped = g.op("Reshape", [normalised, g.op("Concat", dims, axis=0)])
        features = g.op("Add", [features, g.op("Relu", [reshaped])])
    logits = g.conv(features, 16, 1, k=1, relu=False)
    g.op(
        "Resize",
        [logits, "", g.const("scales", np.array([1, 1, 8, 8], dtype=np.float32))],
        out=OUTPUT_NAME,
        mode="linear",
    )
    graph = helper.make_graph(
        g.nodes,
        "many_node_birefnet_standin",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, 1, size, size])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
