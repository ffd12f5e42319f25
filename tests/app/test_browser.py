"""The web app in a real browser (Debian's Chromium through Playwright) against a launched app on localhost: a
short panorama run from the form shows live previews, then the result; its PNG, uploaded in the PNG Info tab,
shows the typed prompt and seed, and "Send to panorama" fills the form back. A full-page screenshot of the
finished page goes to the test's tmp_path; with ``SYNCGUIDE_SCREENSHOT=PATH`` it is copied there too (the README's
``results/app/screenshot.png`` is made so: tests never write into the checkout by themselves)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from syncguide.pngmeta import read_parameters

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 120_000  # the CPU is slow and shared: auto-waiting assertions wait this long

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium): no browser to drive"
)

PROMPT = "a photo of a lighthouse by the sea"
SEED, WIDTH, STEPS, PREVIEW_EVERY = 4242, 256, 12, 2

# records, in order, each new src of the preview image and of the result image (a poll could miss a change)
WATCH_IMAGES = """() => {
    window.__images = [];
    const seen = {preview: null, result: null};
    const look = () => {
        for (const name of ["preview", "result"]) {
            const img = document.querySelector(`#panorama-${name} img`);
            const src = img ? img.src : null;
            if (src && src !== seen[name]) {
                seen[name] = src;
                window.__images.push({name, src});
            }
        }
    };
    new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true});
    look();
}"""


def set_number(page: Page, label: str, value: object) -> None:
    """Type ``value`` into the number input labelled ``label`` (a slider's box or a gr.Number) and commit it."""
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    expect(box).to_have_value(str(value))


def json_field(name: str, value: object) -> re.Pattern:
    """``"name": value`` in a gr.JSON's text (whatever whitespace its rendering puts between the parts)."""
    return re.compile(rf'"{re.escape(name)}"\s*:\s*{re.escape(value)}(?![\w.])')


def test_generate_preview_result_and_png_info_in_a_browser(app, tmp_path: Path) -> None:
    url, service, outputs = app
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)

            # the form: a prompt and a short run
            page.locator("#prompt textarea").fill(PROMPT)
            set_number(page, "number input for width", WIDTH)
            set_number(page, "number input for steps", STEPS)
            set_number(page, "number input for preview every (steps)", PREVIEW_EVERY)
            set_number(page, "seed", SEED)
            expect(page.locator("#panorama-preview img")).to_have_count(0)
            expect(page.locator("#panorama-result img")).to_have_count(0)
            runs = len(service.runs)

            page.evaluate(WATCH_IMAGES)
            page.locator("#panorama-generate").click()
            result = page.locator("#panorama-result img")
            expect(result).to_be_visible(timeout=TIMEOUT_MS)
            expect(result).to_have_attribute("src", re.compile(r"\.png$"))

            # live previews came before the result: several different x0 images while the run worked
            images = page.evaluate("window.__images")
            names = [image["name"] for image in images]
            assert "result" in names, images
            before = [image["src"] for image in images[: names.index("result")] if image["name"] == "preview"]
            assert len(set(before)) >= 2, f"expected live previews before the result; saw {images}"
            expect(page.locator("#panorama-preview img")).to_be_visible()

            # one run, done; the file component links the PNG the app wrote, with the form's parameters
            assert len(service.runs) == runs + 1 and service.runs[-1].outcome == "done"
            link = page.locator("#panorama-file a[data-testid=download-link]")
            expect(link).to_have_count(1)
            response = page.request.get(link.get_attribute("href"))
            assert response.ok, response.status
            downloaded = tmp_path / "result.png"
            downloaded.write_bytes(response.body())
            newest = max(outputs.glob("*.png"), key=lambda path: path.stat().st_mtime)
            assert downloaded.read_bytes() == newest.read_bytes()
            assert result.get_attribute("src").endswith("/" + newest.name)
            stored = read_parameters(downloaded)
            assert (stored["prompt"], stored["seed"], stored["width"], stored["steps"]) == (PROMPT, SEED, WIDTH, STEPS)
            expect(page.locator("#panorama-parameters")).to_contain_text(json_field("prompt", f'"{PROMPT}"'))

            # clear the form's prompt and seed (PNG Info's "Send to panorama" should bring them back)
            page.locator("#prompt textarea").fill("")
            set_number(page, "seed", 0)

            # PNG Info: upload it, see its stored parameters
            page.get_by_role("tab", name="PNG Info").click()
            expect(page.locator("#info-parameters")).not_to_contain_text(PROMPT)
            page.locator("#info-file input[type=file]").set_input_files(downloaded)
            shown = page.locator("#info-parameters")
            expect(shown).to_contain_text(json_field("prompt", f'"{PROMPT}"'), timeout=TIMEOUT_MS)
            expect(shown).to_contain_text(json_field("seed", str(SEED)))
            expect(shown).to_contain_text(json_field("width", str(WIDTH)))

            # ... and send them back to the Panorama tab's form (the tab is selected)
            page.locator("#info-to-panorama").click()
            expect(page.get_by_role("tab", name="Panorama")).to_have_attribute("aria-selected", "true")
            expect(page.locator("#prompt textarea")).to_have_value(PROMPT)
            expect(page.get_by_label("seed", exact=True)).to_have_value(str(SEED))
            expect(page.get_by_label("number input for steps", exact=True)).to_have_value(str(STEPS))
            expect(result).to_be_visible()

            shot = tmp_path / "screenshot.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert not errors, f"JavaScript errors in the page: {errors}"
    assert shot.stat().st_size > 10_000
    if os.environ.get("SYNCGUIDE_SCREENSHOT"):
        target = Path(os.environ["SYNCGUIDE_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
