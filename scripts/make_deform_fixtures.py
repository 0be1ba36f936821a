"""Make the deformable-convolution fixture graphs for tests/model/test_deform_rewrite.py.

Dev-only: needs torch, torchvision and deform-conv2d-onnx-exporter, which `make fixtures` installs
into .venv-fixtures (never into the image or `make test`'s environment). Run it as

    make fixtures

Each fixture is a small torch module ending in torchvision's `deform_conv2d` (offsets and mask
computed from the input by plain convolutions, as BiRefNet's decoder does), exported with the
public exporter — the same one that made the public BiRefNet files — at a given opset. Next to each
`NAME.onnx` goes `NAME.npz`: a fixed input and torchvision's own output for it, so the tests can
check the rewritten graph against torchvision without torch.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import deform_conv2d_onnx_exporter as exporter
import numpy as np
import torch
from torch import nn
from torchvision.ops import deform_conv2d

OUT = Path(__file__).resolve().parent.parent / "tests" / "model" / "deform_fixtures"
SEED = 20261201


@dataclass(frozen=True)
class Variant:
    name: str
    opset: int = 17
    channels: int = 4
    out_channels: int = 6
    size: tuple[int, int] = (9, 11)  # non-square, so a swapped height/width shows
    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    offset_groups: int = 1
    mask: bool = True
    bias: bool = True
    batch: int = 1
    layers: int = 1


BASE = Variant("k3")
VARIANTS = [
    BASE,  # BiRefNet's own kind: 3x3, padding 1, mask and bias
    replace(BASE, name="k1", kernel=(1, 1), padding=(0, 0)),
    replace(BASE, name="k7", kernel=(7, 7), padding=(3, 3), size=(10, 12)),
    replace(BASE, name="k3x5", kernel=(3, 5), padding=(1, 2)),
    replace(BASE, name="k3_no_mask", mask=False),
    replace(BASE, name="k3_no_bias", bias=False),
    replace(BASE, name="k3_pad0", padding=(0, 0)),
    replace(BASE, name="k3_pad2", padding=(2, 2)),
    replace(BASE, name="k3_pad_2x0", padding=(2, 0)),
    replace(BASE, name="k3_stride2", stride=(2, 2)),
    replace(BASE, name="k3_stride_1x2", stride=(1, 2)),
    replace(BASE, name="k3_dilation2", dilation=(2, 2), padding=(2, 2)),
    replace(BASE, name="k3_groups2", groups=2),
    replace(BASE, name="k3_offset_groups2", offset_groups=2),
    replace(BASE, name="k3_batch2", batch=2),
    replace(BASE, name="k3_two_layers", layers=2, out_channels=4),
    *[replace(BASE, name=f"k3_opset{opset}", opset=opset) for opset in (12, 13, 14, 15, 16, 18)],
]


class DeformBlock(nn.Module):
    """One modulated deformable convolution with its offsets and mask predicted from the input."""

    def __init__(self, v: Variant, channels: int) -> None:
        super().__init__()
        self.v = v
        kh, kw = v.kernel
        taps = v.offset_groups * kh * kw
        conv = dict(kernel_size=v.kernel, stride=v.stride, padding=v.padding, dilation=v.dilation)
        self.offset = nn.Conv2d(channels, 2 * taps, **conv)
        self.modulator = nn.Conv2d(channels, taps, **conv) if v.mask else None
        self.weight = nn.Parameter(torch.randn(v.out_channels, channels // v.groups, kh, kw) * 0.3)
        self.bias = nn.Parameter(torch.randn(v.out_channels) * 0.1) if v.bias else None
        # Offsets of a few pixels: fractional positions, and samples off the input's edge (where
        # the decomposition's clipping and zero border do the work).
        nn.init.normal_(self.offset.weight, std=0.25)
        nn.init.normal_(self.offset.bias, std=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = 2.0 * torch.sigmoid(self.modulator(x)) if self.modulator is not None else None
        return deform_conv2d(
            x,
            self.offset(x),
            self.weight,
            self.bias,
            stride=self.v.stride,
            padding=self.v.padding,
            dilation=self.v.dilation,
            mask=mask,
        )


class Net(nn.Module):
    def __init__(self, v: Variant) -> None:
        super().__init__()
        blocks = [DeformBlock(v, v.channels)]
        blocks += [DeformBlock(v, v.out_channels) for _ in range(v.layers - 1)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else torch.relu(x))
        return x


class TinyBiRefNet(nn.Module):
    """BiRefNet's I/O contract (`input_image` [1, 3, H, W] -> `output_image` [1, 1, H, W] logits)
    around two of its kind of deformable convolution (3x3, padding 1, mask and bias): a model the
    bake step can run on photos, as it runs the real one."""

    def __init__(self) -> None:
        super().__init__()
        v = replace(BASE, channels=8, out_channels=8)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.deform = nn.ModuleList([DeformBlock(v, 8), DeformBlock(v, 8)])
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        for block in self.deform:
            x = torch.relu(block(x))
        return self.head(x)


def make_tiny_birefnet(out: Path, size: int = 32) -> dict[str, object]:
    torch.manual_seed(SEED)
    net = TinyBiRefNet().eval()
    path = out / "birefnet_tiny.onnx"
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
    return {"name": "birefnet_tiny", "size": size, "layers": 2, "bytes": path.stat().st_size}


def make(v: Variant, out: Path) -> dict[str, object]:
    torch.manual_seed(SEED)
    net = Net(v).eval()
    x = torch.randn(v.batch, v.channels, *v.size)
    with torch.no_grad():
        y = net(x)
    path = out / f"{v.name}.onnx"
    torch.onnx.export(
        net,
        (x,),
        str(path),
        opset_version=v.opset,
        input_names=["x"],
        output_names=["y"],
        do_constant_folding=True,
        dynamo=False,
    )
    np.savez_compressed(out / f"{v.name}.npz", x=x.numpy(), y=y.numpy())
    return {**asdict(v), "bytes": path.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if exporter.JitScalarType is None:
        # The exporter imports JitScalarType from where torch < 2.9 kept it and otherwise falls back
        # to helpers torch has since removed. Same class, new home; the graph it emits is unchanged.
        from torch.onnx._internal.torchscript_exporter._type_utils import JitScalarType

        exporter.JitScalarType = JitScalarType
    exporter.register_deform_conv2d_onnx_op()
    index = [make(v, args.out) for v in VARIANTS]
    versions = {
        "torch": torch.__version__,
        "torchvision": __import__("torchvision").__version__,
        "deform-conv2d-onnx-exporter": "1.2.0",
    }
    models = [make_tiny_birefnet(args.out)]
    (args.out / "fixtures.json").write_text(
        json.dumps({"made_with": versions, "fixtures": index, "models": models}, indent=1) + "\n"
    )
    made = index + models
    print(f"{len(made)} fixtures, {sum(int(str(f['bytes'])) for f in made)} bytes of ONNX, in {args.out}")


if __name__ == "__main__":
    main()
