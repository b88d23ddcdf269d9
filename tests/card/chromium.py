"""Open rendered cards in the system Chromium (Debian package ``chromium``) through Playwright, never a downloaded
browser, and report what a person would see: text, console messages, requests, width, and pixel colours."""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WIDTH = 1280


def launch(playwright):
    """The system Chromium, headless; the test fails (not skips) when it is missing: `make test` installs it."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium not found: install the Debian package 'chromium' (make test does it as root).")
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    )


def browser_session():
    """For a module-scoped fixture (``yield from browser_session()``): the system Chromium, closed at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@dataclass
class Seen:
    """What the page showed."""

    text: str
    scroll_width: int
    client_width: int
    console: list[tuple[str, str]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    scripts: int = 0
    image: Image.Image | None = None
    map_box: dict | None = None

    def pixel(self, lon: float, lat: float) -> tuple[int, int, int]:
        """The colour where (lon, lat) lies on the map, by equirectangular maths on the map's content box."""
        box = self.map_box
        x = box["left"] + (lon + 180.0) / 360.0 * box["width"]
        y = box["top"] + (90.0 - lat) / 180.0 * box["height"]
        return self.image.getpixel((round(x), round(y)))[:3]


_MAP_BOX = """() => {
  const svg = document.querySelector('svg.map');
  if (!svg) return null;
  const rect = svg.getBoundingClientRect();
  return {left: rect.left + window.scrollX + svg.clientLeft, top: rect.top + window.scrollY + svg.clientTop,
          width: svg.clientWidth, height: svg.clientHeight};
}"""


def look(browser, path: Path, screenshot: Path, *, dark: bool = False, pdf: Path | None = None) -> Seen:
    """Open ``path`` at 1280 px wide, JavaScript disabled, and collect what it shows; save a full-page screenshot.

    With ``pdf``, the page is laid out for print (A4 width) and also printed to that file.
    """
    context = browser.new_context(
        viewport={"width": WIDTH, "height": 900}, java_script_enabled=False, color_scheme="dark" if dark else "light"
    )
    try:
        page = context.new_page()
        console: list[tuple[str, str]] = []
        requests: list[str] = []
        errors: list[str] = []
        page.on("console", lambda message: console.append((message.type, message.text)))
        page.on("request", lambda request: requests.append(request.url))
        page.on("pageerror", lambda error: errors.append(str(error)))
        if pdf is not None:
            page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
            page.emulate_media(media="print")
        page.goto(path.resolve().as_uri())
        if pdf is not None:
            page.pdf(path=str(pdf), format="A4", print_background=True)
        png = page.screenshot(path=str(screenshot), full_page=True)
        # page.evaluate runs in Playwright's utility world, which works with the page's scripts disabled.
        seen = Seen(
            text=page.inner_text("body"),
            scroll_width=page.evaluate("document.documentElement.scrollWidth"),
            client_width=page.evaluate("document.documentElement.clientWidth"),
            console=console,
            requests=[url for url in requests if url != path.resolve().as_uri()],
            page_errors=errors,
            scripts=page.locator("script").count(),
            image=Image.open(io.BytesIO(png)).convert("RGB"),
            map_box=page.evaluate(_MAP_BOX),
        )
    finally:
        context.close()
    return seen


def is_footprint(rgb: tuple[int, int, int]) -> bool:
    """The footprint's rose (#d6336c at 75 % over land or sea): red clearly above green and blue."""
    red, green, blue = rgb
    return red - max(green, blue) > 50
