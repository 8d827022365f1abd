"""The built leaderboard site in headless Chromium: it loads cleanly, ranks, sorts, filters, links, shows images.

The site is built from a constructed results tree with a known answer (tests/boards.py): on the
Augment board Team A helps (+15 points), the duplicate baseline helps a little, the classic
baseline is exactly the real-only level (Δ 0, listed beside the real-only zero line, which has no rank),
and Team B hurts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

EXPECTED_AUGMENT = ["team-a__editor", "baseline__duplicate", "baseline__classic", "real-only", "team-b__noisy"]
EXPECTED_AUGMENT_RANKS = ["1", "2", "3", "reference", "4"]
HEADLINE_AUGMENT = "augment--linear-probe--all"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    from leaderboard.site import build_site
    from tests.boards import make_example_tree

    root = tmp_path_factory.mktemp("leaderboard")
    make_example_tree(root / "submissions")
    return build_site(root / "submissions", root / "site")


@pytest.fixture(scope="module")
def base_url(site, serve_dir) -> str:
    return serve_dir(site)


def _console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def _open(driver, url: str) -> None:
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    driver.execute_script("return document.readyState")


def _broken_images(driver) -> list[str]:
    """Every <img> on the page that has not decoded to a non-empty picture (after waiting for all)."""
    return driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const images = Array.from(document.images);
        Promise.all(images.map(img => img.complete ? Promise.resolve() :
            new Promise(resolve => { img.onload = img.onerror = resolve; })))
          .then(() => done(images.filter(img => !(img.complete && img.naturalWidth > 0))
                                 .map(img => img.currentSrc || img.src)));
        """
    )


def _screenshot(driver, path: Path, width: int = 1280) -> None:
    """A full-page screenshot: grow the window to the document's height first."""
    height = driver.execute_script("return Math.max(document.body.scrollHeight, 600)")
    driver.set_window_size(width, min(height + 120, 6000))
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)


def _visible_rows(driver, section_id: str) -> list[str]:
    from selenium.webdriver.common.by import By

    section = driver.find_element(By.ID, section_id)
    return [row.get_attribute("data-submission") for row in section.find_elements(By.CSS_SELECTOR, "tbody tr") if row.is_displayed()]


def _header(driver, section_id: str, column: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f"#{section_id} th[data-column='{column}']")


def _column_values(driver, section_id: str, column: str) -> list[str]:
    """The data-value of one column's cells, top to bottom (the column found by its header)."""
    return driver.execute_script(
        """
        const section = document.getElementById(arguments[0]);
        const headers = Array.from(section.querySelectorAll("thead th"));
        const index = headers.findIndex(th => th.dataset.column === arguments[1]);
        return Array.from(section.querySelectorAll("tbody tr")).map(row => row.cells[index].dataset.value);
        """,
        section_id,
        column,
    )


def test_index_loads_without_console_errors_and_shows_the_ranked_board(browser, base_url, artifacts_dir):
    from selenium.webdriver.common.by import By

    _open(browser, base_url + "index.html")
    assert _console_errors(browser) == []
    assert "Pipeline demo, not a scientific result" in browser.find_element(By.CLASS_NAME, "demo-banner").text
    assert _visible_rows(browser, HEADLINE_AUGMENT) == EXPECTED_AUGMENT
    ranks = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, f"#{HEADLINE_AUGMENT} tbody td.rank")]
    assert ranks == EXPECTED_AUGMENT_RANKS
    verdicts = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, f"#{HEADLINE_AUGMENT} .verdict")]
    assert verdicts == ["helps", "helps", "no significant effect", "reference", "hurts"]
    # Only the headline view of each board is on screen at first; per-backbone views wait for the filter.
    shown = [s.get_attribute("id") for s in browser.find_elements(By.CSS_SELECTOR, "section.view") if s.is_displayed()]
    assert shown == [HEADLINE_AUGMENT, "replace--linear-probe--all"]
    assert _broken_images(browser) == []
    _screenshot(browser, artifacts_dir / "leaderboard-index.png")
    browser.set_window_size(390, 844)  # a phone
    _screenshot(browser, artifacts_dir / "leaderboard-index-phone.png", width=390)


def test_clicking_a_column_header_reorders_the_board(browser, base_url):
    _open(browser, base_url + "index.html")
    header = _header(browser, HEADLINE_AUGMENT, "team")
    header.click()
    teams = [value.lower() for value in _column_values(browser, HEADLINE_AUGMENT, "team")]
    assert teams == sorted(teams)
    assert _visible_rows(browser, HEADLINE_AUGMENT) != EXPECTED_AUGMENT  # the rows really moved
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    # Numeric columns sort best first on the first click: macro-F1 of the mixed runs.
    _header(browser, HEADLINE_AUGMENT, "macro_f1").click()
    values = [float(value) for value in _column_values(browser, HEADLINE_AUGMENT, "macro_f1")]
    assert values == sorted(values, reverse=True)
    assert _visible_rows(browser, HEADLINE_AUGMENT)[-1] == "team-b__noisy"
    rank_header = _header(browser, HEADLINE_AUGMENT, "rank")
    rank_header.click()  # the rank sorts ascending on its first click: back to the board's order
    assert rank_header.get_attribute("aria-sort") == "ascending"
    assert _visible_rows(browser, HEADLINE_AUGMENT) == EXPECTED_AUGMENT
    assert _console_errors(browser) == []


def test_filters_pick_the_board_backbone_and_track(browser, base_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, base_url + "index.html")
    Select(browser.find_element(By.ID, "filter-track")).select_by_value("open")
    assert _visible_rows(browser, HEADLINE_AUGMENT) == ["real-only", "team-b__noisy"]
    Select(browser.find_element(By.ID, "filter-board")).select_by_value("replace")
    Select(browser.find_element(By.ID, "filter-backbone")).select_by_value("efficientnet-lite0")
    shown = [s.get_attribute("id") for s in browser.find_elements(By.CSS_SELECTOR, "section.view") if s.is_displayed()]
    assert shown == ["replace--linear-probe--efficientnet-lite0"]
    assert browser.current_url.endswith("#replace/linear-probe/efficientnet-lite0/open")
    # The filter state survives a reload (it lives in the URL fragment).
    browser.refresh()
    shown = [s.get_attribute("id") for s in browser.find_elements(By.CSS_SELECTOR, "section.view") if s.is_displayed()]
    assert shown == ["replace--linear-probe--efficientnet-lite0"]
    assert _console_errors(browser) == []


def test_a_submission_link_opens_its_page_with_every_image(browser, base_url, artifacts_dir):
    from selenium.webdriver.common.by import By

    _open(browser, base_url + "index.html")
    browser.find_element(By.CSS_SELECTOR, f"#{HEADLINE_AUGMENT} a[href='submissions/team-a__editor/index.html']").click()
    assert browser.current_url.endswith("/submissions/team-a__editor/index.html")
    assert "team-a__editor" in browser.find_element(By.TAG_NAME, "h1").text
    assert _console_errors(browser) == []
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) >= 6 + 2  # one thumbnail per class, ratio curves, confusion matrices
    # the per-class Δ F1 is drawn by plotly from the page's data (its static copy is the no-JavaScript fallback)
    assert browser.execute_script("return document.querySelector('div.heatmap').getAttribute('data-drawn')") is not None
    assert _broken_images(browser) == []
    _screenshot(browser, artifacts_dir / "leaderboard-submission.png")


@pytest.mark.parametrize("page", ["methodology.html", "submissions/baseline__classic/index.html", "submissions/team-b__noisy/index.html"])
def test_every_page_loads_cleanly(browser, base_url, artifacts_dir, page):
    _open(browser, base_url + page)
    assert _console_errors(browser) == []
    assert _broken_images(browser) == []
    name = page.replace("submissions/", "").replace("/index.html", "").replace(".html", "")
    _screenshot(browser, artifacts_dir / f"leaderboard-{name}.png")


def test_the_site_works_from_file_urls(browser, site):
    """No server needed: every asset is local and linked relatively."""
    _open(browser, (site / "index.html").as_uri())
    assert _console_errors(browser) == []
    assert _visible_rows(browser, HEADLINE_AUGMENT) == EXPECTED_AUGMENT
    assert _broken_images(browser) == []
