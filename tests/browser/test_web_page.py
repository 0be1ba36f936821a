"""The local run's web page in a real browser: headless Debian Chromium driven by Playwright.

Playwright's own browser download is not used (it cannot be fetched here): `make test` installs
Debian's chromium when it is missing and it can (as root), and these tests skip only when
/usr/bin/chromium is absent. The page takes a photo, calls /remove and /mask, and shows both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from handler.local.server import LocalServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path("/tmp/background-remover-web-page.png")
# Bounds for the page to finish, not expectations: U-2-Net-p takes well under a second per image.
RESULT_TIMEOUT_MS = 90_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: `make test` installs Debian's chromium when run as root"
)


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


def test_a_chosen_photo_shows_its_cutout_and_mask_with_download_links(page: Page, samples: dict[str, Path]) -> None:
    photo = samples["astronaut"]
    with Image.open(photo) as image:
        photo_size = image.size
    expect(page).to_have_title("Background remover (local)")

    # WHEN a photo is picked with the file input
    page.set_input_files("#file", str(photo))

    # THEN both results appear, at the photo's own size
    state = _finished_state(page)
    assert state == "done", page.inner_text("#status")
    assert _natural_size(page, "#cutout") == photo_size
    assert _natural_size(page, "#mask") == photo_size
    expect(page.locator("#status")).to_contain_text("astronaut.jpg: done")
    expect(page.locator("#cutout-info")).to_contain_text(f"{photo_size[0]}×{photo_size[1]}")
    # AND the cutout sits on a checkerboard, so its transparency shows
    background = page.eval_on_selector(".checker", "frame => getComputedStyle(frame).backgroundImage")
    assert "conic-gradient" in background
    # AND each result can be downloaded under a name derived from the photo's
    for kind in ("cutout", "mask"):
        link = page.locator(f"#download-{kind}")
        expect(link).to_be_visible()
        assert link.get_attribute("download") == f"astronaut-{kind}.png"
        assert (link.get_attribute("href") or "").startswith("blob:")
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000


def test_a_file_that_is_not_an_image_shows_the_functions_error(page: Page, tmp_path: Path) -> None:
    # A file that claims to be a JPEG (by its name, so the browser sends image/jpeg) but is not one
    fake = tmp_path / "holiday.jpg"
    fake.write_text("not a picture")

    page.set_input_files("#file", str(fake))

    assert _finished_state(page) == "error"
    expect(page.locator("#status")).to_contain_text("400")
    expect(page.locator("#status")).to_contain_text("not an image")
    expect(page.locator("#download-cutout")).to_be_hidden()
