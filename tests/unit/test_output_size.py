"""`render.check_output_size`: options whose format cannot hold the output are refused from the
photo's header, before any pixel is decoded, naming the limit and the `max_size` that fits."""

from __future__ import annotations

import pytest

from handler.aws.removebg import SidedMargin
from handler.core.errors import InvalidParameter
from handler.core.image.options import RenderOptions
from handler.core.render import check_output_size


@pytest.mark.parametrize(
    ("size", "options"),
    [
        ((16383, 3000), RenderOptions(format="webp")),
        ((20000, 3000), RenderOptions(format="webp", max_size=16383)),
        ((20000, 3000), RenderOptions(format="webp", max_pixels=4_000_000)),  # remove.bg's size=hd
        ((65500, 900), RenderOptions(format="jpeg", bg_color=(255, 255, 255))),
        ((100_000, 640), RenderOptions(format="png")),  # PNG holds any size an input may have
    ],
)
def test_outputs_the_format_holds_pass(size: tuple[int, int], options: RenderOptions) -> None:
    check_output_size(size, options)


@pytest.mark.parametrize(
    ("size", "options", "limit", "remedy"),
    [
        ((16384, 3000), RenderOptions(format="webp"), "16383", "max_size=16383"),
        ((3000, 20000), RenderOptions(format="webp", crop=True), "16383", "max_size=16383"),  # crop: not yet known
        ((65501, 900), RenderOptions(format="jpeg", bg_color=(0, 0, 0)), "65500", "max_size=20000"),
    ],
)
def test_outputs_past_the_format_are_refused_with_the_remedy(
    size: tuple[int, int], options: RenderOptions, limit: str, remedy: str
) -> None:
    with pytest.raises(InvalidParameter) as refused:
        check_output_size(size, options)

    assert refused.value.parameter == "format"
    assert limit in refused.value.message and remedy in refused.value.message and "format=png" in refused.value.message


def test_a_margin_that_adds_canvas_past_the_edge_counts() -> None:
    # remove.bg's crop_margin goes on past the photo's edge: 500 px a side here, half the subject at most
    margin = SidedMargin(0, sides_spec=((500.0, False),) * 4)
    options = RenderOptions(format="webp", crop=True, margin=margin)

    check_output_size((15383, 100), options)
    with pytest.raises(InvalidParameter, match="16384x200"):
        check_output_size((15384, 100), options)
