"""The local run's web page in a real browser: headless Debian Chromium driven by Playwright.

Playwright's own browser download is not used (it cannot be fetched here): `make test` installs
Debian's chromium when it is missing and it can (as root); without it these tests fail
(tests/tools.py). The page takes a photo, asks POST /remove for the cutout and the mask
of one inference (`outputs=cutout,mask`), and shows them beside the original. Screenshots go to
/tmp/background-remover-web-page/ (printed; `pytest -s` shows them), outside pytest's tmp_path,
which other pytest runs on the machine rotate away.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright

from handler.local.server import LocalServer
from tests.tools import CHROMIUM

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Bounds for the page to finish, not expectations: U-2-Net-p takes well under a second per image.
RESULT_TIMEOUT_MS = 90_000
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
# The page sends photos over this size through /uploads (INLINE_MAX_BYTES in index.html).
INLINE_LIMIT = 4_400_000
SCREENSHOTS = Path(tempfile.gettempdir()) / "background-remover-web-page"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, server: LocalServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(f"{server.url}/")
    yield page
    context.close()


def _finished_state(page: Page) -> str:
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=RESULT_TIMEOUT_MS)
    return page.evaluate("document.body.dataset.state")


def _natural_size(page: Page, selector: str) -> tuple[int, int]:
    width, height = page.eval_on_selector(selector, "image => [image.naturalWidth, image.naturalHeight]")
    return width, height


def _screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    assert path.stat().st_size > 10_000
    return path


def _is_api(path: str) -> Callable[[Request], bool]:
    return lambda request: urlsplit(request.url).path == path


def _query(request: Request) -> dict[str, str]:
    return {name: values[-1] for name, values in parse_qs(urlsplit(request.url).query).items()}


def test_a_chosen_photo_shows_its_cutout_and_mask_beside_the_original(page: Page, samples: dict[str, Path]) -> None:
    photo = samples["astronaut"]
    with Image.open(photo) as image:
        photo_size = image.size
    expect(page).to_have_title("Background remover (local)")
    sent: list[Request] = []
    page.on("request", lambda request: sent.append(request))

    # WHEN a photo is picked with the file input
    page.set_input_files("#file", str(photo))

    # THEN both results appear, at the photo's own size, beside the original
    state = _finished_state(page)
    assert state == "done", page.inner_text("#status")
    assert _natural_size(page, "#original") == photo_size
    assert _natural_size(page, "#cutout") == photo_size
    assert _natural_size(page, "#mask") == photo_size
    expect(page.locator("#status")).to_contain_text("astronaut.jpg: done")
    expect(page.locator("#cutout-info")).to_contain_text(f"{photo_size[0]}×{photo_size[1]}")
    expect(page.locator("#original-info")).to_contain_text(f"{photo_size[0]}×{photo_size[1]}")
    boxes = [page.locator(f"figure:has(#{kind})").bounding_box() for kind in ("original", "cutout", "mask")]
    assert all(box is not None for box in boxes)
    tops = {round(box["y"]) for box in boxes if box}
    lefts = [box["x"] for box in boxes if box]
    assert len(tops) == 1 and lefts == sorted(lefts), f"not side by side: {boxes}"
    # AND both came from ONE request, with the JSON answer that carries two images
    api = [request for request in sent if urlsplit(request.url).path in ("/remove", "/mask", "/uploads")]
    assert [urlsplit(request.url).path for request in api] == ["/remove"]
    assert _query(api[0])["outputs"] == "cutout,mask"
    assert api[0].headers["accept"] == "application/json"
    # AND the cutout sits on a checkerboard, so its transparency shows
    background = page.eval_on_selector(".checker", "frame => getComputedStyle(frame).backgroundImage")
    assert "conic-gradient" in background
    # AND each result can be downloaded under a name derived from the photo's
    for kind in ("cutout", "mask"):
        link = page.locator(f"#download-{kind}")
        expect(link).to_be_visible()
        assert link.get_attribute("download") == f"astronaut-{kind}.png"
        assert (link.get_attribute("href") or "").startswith("blob:")
    _screenshot(page, "astronaut")


def test_the_page_names_the_model_it_runs(page: Page, server: LocalServer) -> None:
    expect(page.locator("#model")).to_have_text(server.model_summary)
    expect(page.locator("#model")).to_contain_text("u2netp.onnx")


def _change_and_capture(page: Page, action: Callable[[], object]) -> tuple[dict[str, str], str]:
    """Do `action`, return the query of the request it sends and how that run ended."""
    with page.expect_request(_is_api("/remove"), timeout=RESULT_TIMEOUT_MS) as sent:
        action()
    return _query(sent.value), _finished_state(page)


def test_every_control_changes_the_request(page: Page, samples: dict[str, Path]) -> None:
    # GIVEN a photo already done with the defaults
    first, state = _change_and_capture(page, lambda: page.set_input_files("#file", str(samples["chelsea"])))
    assert state == "done", page.inner_text("#status")
    assert first == {"outputs": "cutout,mask", "format": "png", "crop": "false", "refine": "true"}

    def fill(selector: str, value: str) -> Callable[[], None]:
        def act() -> None:
            page.fill(selector, value)
            page.press(selector, "Tab")  # a text field reports its change when it loses focus

        return act

    # WHEN each control is changed in turn, THEN the next request carries it (and what came before)
    steps: list[tuple[str, Callable[[], object], dict[str, str]]] = [
        ("crop", lambda: page.check("#crop"), {"crop": "true"}),
        ("margin", fill("#margin", "5%"), {"crop": "true", "margin": "5%"}),
        ("background", lambda: page.check("#bg"), {"bg_color": "#ffffff"}),
        ("colour", lambda: page.fill("#bg-color", "#ff0000"), {"bg_color": "#ff0000"}),
        ("refine", lambda: page.uncheck("#refine"), {"refine": "false"}),
        ("max size", fill("#max-size", "120"), {"max_size": "120"}),
        ("format", lambda: page.select_option("#format", "webp"), {"format": "webp"}),
    ]
    for label, action, expected in steps:
        query, state = _change_and_capture(page, action)
        assert state == "done", f"{label}: {page.inner_text('#status')}"
        assert query["outputs"] == "cutout,mask"
        for name, value in expected.items():
            assert query.get(name) == value, f"{label}: {query}"
    # AND the results follow: cropped, within 120 px, WebP, on an opaque red background
    width, height = _natural_size(page, "#cutout")
    assert max(width, height) == 120 and _natural_size(page, "#mask") == (width, height)
    assert page.get_attribute("#download-cutout", "download") == "chelsea-cutout.webp"
    corner = page.evaluate(
        """() => { const image = document.getElementById('cutout'); const canvas = document.createElement('canvas');
        canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
        const context = canvas.getContext('2d'); context.drawImage(image, 0, 0);
        return [...context.getImageData(0, 0, 1, 1).data]; }"""
    )
    assert corner[3] == 255 and corner[0] > 200 and corner[1] < 60, corner
    _screenshot(page, "options")

    # WHEN the resolution is one this model (U-2-Net-p, fixed at 320) does not take
    query, state = _change_and_capture(page, lambda: page.select_option("#resolution", "512"))

    # THEN it was asked for, and the API's refusal is shown in words
    assert query["resolution"] == "512"
    assert state == "error"
    expect(page.locator("#status")).to_contain_text("resolution:")
    # and unchecking a control takes its option away again
    query, state = _change_and_capture(page, lambda: page.select_option("#resolution", ""))
    assert "resolution" not in query and state == "done"
    query, _ = _change_and_capture(page, lambda: page.uncheck("#crop"))
    assert query["crop"] == "false" and "margin" not in query


def test_a_superseded_request_does_not_overwrite_the_newer_result(page: Page, samples: dict[str, Path]) -> None:
    # GIVEN the first request for a photo held back before it reaches the API
    held: list[Route] = []

    def hold_the_first(route: Route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/remove?*", hold_the_first)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.failure or ""))
    with page.expect_request(_is_api("/remove")):
        page.set_input_files("#file", str(samples["chelsea"]))

    # WHEN an option changes while it is held, and the newer request finishes first
    with page.expect_request(_is_api("/remove")) as newer:
        page.select_option("#format", "webp")
    # (the browser's messages come in order: the first request's interception before the second)
    assert len(held) == 1
    assert _query(newer.value)["format"] == "webp"
    assert _finished_state(page) == "done", page.inner_text("#status")
    # AND only then does the first request's answer arrive: a different, tiny image
    tiny = "iVBORw0KGgoAAAANSUhEUgAAAAMAAAADCAYAAABWKLW/AAAAEklEQVR4nGP4z8DwHwyhDAYGALb4CPhl6pVxAAAAAElFTkSuQmCC"
    document = {"image": tiny, "mask": tiny, "content_type": "image/png", "width": 3, "height": 3}
    held[0].fulfill(status=200, content_type="application/json", body=json.dumps(document))
    page.wait_for_function("Number(document.body.dataset.runs) >= 2", timeout=RESULT_TIMEOUT_MS)

    # THEN the page still shows the newer result, and no error for the superseded one
    assert _natural_size(page, "#cutout") == (451, 300)
    assert page.get_attribute("#download-cutout", "download") == "chelsea-cutout.webp"
    assert page.evaluate("document.body.dataset.state") == "done"
    expect(page.locator("#status")).to_contain_text("chelsea.jpg: done")
    # AND the superseded request was cancelled, not merely ignored
    assert failed == ["net::ERR_ABORTED"]
    _screenshot(page, "superseded")


def test_a_file_that_is_not_an_image_shows_the_functions_error(page: Page, tmp_path: Path) -> None:
    # A file that claims to be a JPEG (by its name, so the browser sends image/jpeg) but is not one
    fake = tmp_path / "holiday.jpg"
    fake.write_text("not a picture")

    page.set_input_files("#file", str(fake))

    assert _finished_state(page) == "error"
    expect(page.locator("#status")).to_contain_text("400")
    expect(page.locator("#status")).to_contain_text("not an image")
    expect(page.locator("#download-cutout")).to_be_hidden()


def test_an_api_error_is_shown_once_in_words(page: Page, samples: dict[str, Path]) -> None:
    # GIVEN JPEG chosen without a background colour, which a cutout cannot be
    page.select_option("#format", "jpeg")

    page.set_input_files("#file", str(samples["coffee"]))

    # THEN the API's message is shown, once, as a sentence: not the JSON it came in
    assert _finished_state(page) == "error"
    status = page.inner_text("#status")
    assert status.count("JPEG has no transparency") == 1, status
    assert "(HTTP 400, invalid_parameter)" in status
    assert "{" not in status and '"error"' not in status
    _screenshot(page, "error")


def _noisy_photo(path: Path, size: int, quality: int) -> Path:
    """The astronaut upscaled with noise: a large file whose cutout hardly compresses."""
    rng = np.random.default_rng(0)
    with Image.open(SAMPLES / "astronaut.jpg") as image:
        base = np.asarray(image.convert("RGB").resize((size, size))).astype(np.int16)
    noisy = np.clip(base + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(path, "JPEG", quality=quality)
    return path


def _fetches(page: Page) -> list[Request]:
    """The page's fetch() calls from now on, in the order it makes them."""
    sent: list[Request] = []
    page.on("request", lambda request: sent.append(request) if request.resource_type == "fetch" else None)
    return sent


def _assert_went_through_uploads(sent: list[Request], server: LocalServer) -> list[tuple[str, str]]:
    """POST /uploads, the form POST to the input bucket, then only polls of /results/<id>."""
    api = [(request.method, urlsplit(request.url).path) for request in sent if request.url.startswith(server.url)]
    # (a redirect the page did not follow still shows up as a request: Playwright's account of a 303)
    s3 = [
        (request.method, urlsplit(request.url).path)
        for request in sent
        if request.url.startswith(server.s3_endpoint) and request.redirected_from is None
    ]
    uploads = [index for index, step in enumerate(api) if step == ("POST", "/uploads")]
    assert len(uploads) == 1, api
    polls = api[uploads[0] + 1 :]
    assert polls and all(method == "GET" and path.startswith("/results/") for method, path in polls), api
    assert s3 == [("POST", f"/{server.input_bucket}")]
    ticket = next(request for request in sent if urlsplit(request.url).path == "/uploads").post_data_json
    assert ticket is not None
    assert ticket["content_type"] == "image/jpeg" and ticket["format"] == "png"
    return api


def test_a_large_photo_goes_through_uploads_and_s3(page: Page, server: LocalServer, tmp_path: Path) -> None:
    # GIVEN a photo over the ~4.5 MB a synchronous request can carry
    photo = _noisy_photo(tmp_path / "large.jpg", 2400, quality=97)
    assert photo.stat().st_size > INLINE_LIMIT, photo.stat().st_size
    sent = _fetches(page)

    page.set_input_files("#file", str(photo))

    # THEN it goes through the upload flow only (POST /remove would be refused), and both results
    # come back from S3 at the photo's size
    state = _finished_state(page)
    assert state == "done", page.inner_text("#status")
    api = _assert_went_through_uploads(sent, server)
    assert api[0] == ("POST", "/uploads")
    for kind in ("cutout", "mask"):
        assert _natural_size(page, f"#{kind}") == (2400, 2400)
        assert (page.get_attribute(f"#{kind}", "src") or "").startswith(server.s3_endpoint)
        # S3's links are another origin's, where `download` is ignored: they open beside the page
        assert page.get_attribute(f"#download-{kind}", "target") == "_blank"
    expect(page.locator("#status")).to_contain_text("large.jpg: done")
    _screenshot(page, "large-upload")


def test_a_result_too_large_to_come_back_inline_is_shown_from_s3(
    page: Page, server: LocalServer, tmp_path: Path
) -> None:
    # GIVEN a photo small enough to send, whose PNG cutout is over the 6 MB a response can carry
    photo = _noisy_photo(tmp_path / "noisy.jpg", 2000, quality=90)
    assert photo.stat().st_size < INLINE_LIMIT
    sent = _fetches(page)

    page.set_input_files("#file", str(photo))

    # THEN POST /remove answers with links to both images, stored in S3, and the page shows them
    # from there: one request, one model run (no second trip through /uploads)
    state = _finished_state(page)
    assert state == "done", page.inner_text("#status")
    assert [(request.method, urlsplit(request.url).path) for request in sent] == [("POST", "/remove")]
    for kind in ("cutout", "mask"):
        assert _natural_size(page, f"#{kind}") == (2000, 2000)
        assert (page.get_attribute(f"#{kind}", "src") or "").startswith(f"{server.s3_endpoint}/{server.output_bucket}/")
        assert page.get_attribute(f"#download-{kind}", "target") == "_blank"


def test_a_large_file_that_fails_in_the_jobs_function_shows_why(
    page: Page, server: LocalServer, tmp_path: Path
) -> None:
    # GIVEN a file over the inline limit that claims to be a JPEG but is not one
    fake = tmp_path / "scan.jpg"
    fake.write_bytes(bytes(range(256)) * (INLINE_LIMIT // 256 + 1))
    sent = _fetches(page)

    page.set_input_files("#file", str(fake))

    # THEN the upload goes through, and the recorded failure is shown in words
    assert _finished_state(page) == "error"
    _assert_went_through_uploads(sent, server)
    status = page.inner_text("#status")
    assert status.startswith("scan.jpg: ") and "invalid_image" in status, status
    assert "{" not in status
    expect(page.locator("#download-cutout")).to_be_hidden()
