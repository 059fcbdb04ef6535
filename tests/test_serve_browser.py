"""``visret serve`` in a real browser: headless Chromium (the system's, driven by Playwright) opens
the overview, filters by a label, uploads a query, follows a result and visits an image page."""

import os
import shutil
import socket
import threading
from pathlib import Path

import pytest
import uvicorn

from visret.serve.app import create_app

CHROMIUM = next((path for path in map(shutil.which, ("chromium", "chromium-browser")) if path), None)
if CHROMIUM is None and os.environ.get("CI") != "true":
    pytest.skip("no chromium on PATH (make test installs the Debian package when it may)", allow_module_level=True)


@pytest.fixture(scope="module")
def address(digits_index):
    """A real uvicorn server on a free loopback port, in a thread, for the whole module."""
    listening = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(digits_index), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "CI must run the browser tests: install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        yield tab
        browser.close()


def test_overview_then_filter_by_a_label(page, address):
    page.goto(address + "/")
    assert page.locator("#entries .tile").count() == 60  # the first page of 150
    page.click("#classes >> text=6 (15)")
    assert page.url.endswith("/?label=6")
    tiles = page.locator("#entries .tile")
    assert tiles.count() == 15 and all(text.strip().endswith(" 6") for text in tiles.all_inner_texts())


def test_upload_a_query_see_its_self_match_then_follow_a_result(page, address, digits, tmp_path):
    image = sorted((digits / "train" / "8").iterdir())[3]
    page.goto(address + "/")
    with page.expect_navigation():
        page.set_input_files("#image", str(image))  # choosing a file submits the search
    first = page.locator("#results .tile").first
    assert float(first.get_attribute("data-distance")) < 1e-4 and first.get_attribute("data-rank") == "1"
    assert "k-NN prediction: 8" in page.inner_text("#prediction")
    page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
    assert (tmp_path / "serve.png").stat().st_size > 10_000
    second = page.locator("#results .tile").nth(1)
    with page.expect_navigation():
        second.locator("a").first.click()
    assert "/search?id=" in page.url and page.locator("#results .tile").count() == 12
    assert page.locator("#results .tile.correct").count() + page.locator("#results .tile.wrong").count() == 12


def test_an_image_page_shows_the_file_and_its_neighbours(page, address):
    page.goto(address + "/")
    with page.expect_navigation():
        page.locator("#entries .tile").first.locator("a").nth(1).click()
    assert "/entry/" in page.url and page.inner_text("#path").endswith(".png")
    width = page.evaluate("document.getElementById('full').naturalWidth")
    assert width == 8  # the digit file itself, served by id
    assert page.locator(".grid .tile").count() == 8
