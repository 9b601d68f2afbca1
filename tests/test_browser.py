"""The page in real headless Chromium (Debian's package, never a downloaded one): translate, heatmap (words and
subword pieces), explain, and nothing refused by the server's Content-Security-Policy.

Screenshots go to tests/artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import served
from rnnmt.serving import create_app
from rnnmt.translator import Translator

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(f"Debian's chromium is not installed ({CHROMIUM} is absent): apt-get install -y chromium",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the Python package) is not installed")
expect = sync_api.expect

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DEVANAGARI = re.compile("[\u0900-\u097f]")
SENTENCE = "My sister's wedding is in December."


@pytest.fixture(scope="module")
def server(tiny_model) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread; yields its base URL."""
    with served(create_app(Translator.load(tiny_model, "cpu"))) as (host, port):
        yield f"http://{host}:{port}"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser, server: str, width: int, height: int, outside: list[str]):
    """A fresh page at the server; every request that leaves the server, and every refusal by the server's
    Content-Security-Policy, is recorded in ``outside``."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("request", lambda request: None if request.url.startswith(server) else outside.append(request.url))
    page.on("console", lambda message: outside.append(message.text) if "Content Security Policy" in message.text
            else None)
    page.goto(server)
    expect(page.locator("#model-info")).to_have_text(re.compile("^Model"))  # waits without eval, which the CSP bars
    return page


def wait_for_hindi(page) -> str:
    expect(page.locator("#hindi")).to_have_text(DEVANAGARI, timeout=15000)
    return page.text_content("#hindi")


def test_translate_shows_hindi_a_heatmap_and_the_steps(browser, server):
    outside: list[str] = []
    page = open_page(browser, server, 1280, 900, outside)
    page.fill("#source", SENTENCE)
    page.get_by_role("button", name="Translate", exact=True).click()
    assert DEVANAGARI.search(wait_for_hindi(page))
    rows, columns = page.locator("#heatmap tbody tr").count(), page.locator("#heatmap thead th").count()
    assert rows >= 2 and columns == len(SENTENCE.split()) + 1  # words (the default view), then </s>
    assert page.locator("#heatmap tbody td").count() == rows * columns
    page.get_by_label("Subword pieces", exact=True).check()  # the tiny model's vocabulary splits words
    expect(page.locator("#heatmap thead th")).not_to_have_count(columns)
    pieces = page.locator("#heatmap thead th").count()
    assert pieces > columns
    assert page.locator("#heatmap tbody td").count() == page.locator("#heatmap tbody tr").count() * pieces
    page.get_by_label("Words", exact=True).check()
    expect(page.locator("#heatmap thead th")).to_have_count(columns)
    page.get_by_role("button", name="Explain the steps").click()
    page.wait_for_selector("#explain-panel:not([hidden]) .step")
    page.get_by_role("button", name="Next step").click()
    assert page.text_content(".stepper span").startswith("Step 2 of")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-desktop.png"), full_page=True)
    assert outside == []


def test_keyboard_alone_on_a_phone_width_screen(browser, server):
    outside: list[str] = []
    page = open_page(browser, server, 390, 844, outside)
    assert page.evaluate("document.activeElement.id") == "source"
    page.keyboard.type("How are you?")
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowDown")  # beam size: from the model's 1 to 2
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Control+Enter")
    assert DEVANAGARI.search(wait_for_hindi(page))
    assert "beam 2" in page.text_content("#score")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Explain the steps"
    page.keyboard.press("Enter")
    page.wait_for_selector("#explain-panel:not([hidden]) .step")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    page.screenshot(path=str(ARTIFACTS / "page-phone.png"), full_page=True)
    assert outside == []


def test_a_glossary_term_is_forced_and_named(browser, server):
    outside: list[str] = []
    page = open_page(browser, server, 1280, 900, outside)
    page.fill("#source", "Flowers bloom in spring.")
    page.locator("#glossary-box summary").click()  # the box opens
    page.fill("#glossary", "Spring = बसंत\n\nzebra\tज़ेबरा\n")
    page.select_option("#beam", "5")
    page.get_by_role("button", name="Translate", exact=True).click()
    expect(page.locator("#terms")).to_have_text("Glossary terms used: Spring → बसंत.")
    assert wait_for_hindi(page).count("बसंत") == 1
    page.screenshot(path=str(ARTIFACTS / "page-glossary.png"), full_page=True)
    page.fill("#glossary", "spring = बसंत\nzebra")
    page.get_by_role("button", name="Translate", exact=True).click()
    expect(page.locator("#error")).to_have_text("Glossary line 2: write “English = Hindi”, with both sides.")
    assert outside == []
