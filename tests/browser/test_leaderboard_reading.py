"""What a reader sees, in headless Chromium: charts drawn from the table rows and following the filters,
no clipped cells at 1400 and 900 px, every link working from file:// and from `leaderboard serve`, the
compare page, and screenshots of the index, an entry, the compare page and the methodology page
(test-artifacts/, for a person to look at)."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

HEADLINE_AUGMENT = "augment--linear-probe--all"
PAGES = ["index.html", "methodology.html", "compare.html", "submissions/team-a__editor/index.html",
         "submissions/baseline__classic/index.html"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    from leaderboard.site import build_site
    from tests.boards import make_example_tree

    root = tmp_path_factory.mktemp("reading")
    make_example_tree(root / "submissions", seeds=(0, 1), per_class=10)
    return build_site(root / "submissions", root / "site")


@pytest.fixture(scope="module")
def base_url(site, serve_dir) -> str:
    return serve_dir(site)


def _errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def _open(driver, url: str) -> None:
    driver.get_log("browser")
    driver.get(url)


def _chart_points(driver, section_id: str) -> list[str]:
    """The entry labels plotly drew in a view's chart (its trace's y values)."""
    return driver.execute_script(
        "const div = document.querySelector('#' + arguments[0] + ' div.chart');"
        "return div && div.data ? div.data[0].y.map(String) : null;", section_id)


def _table_rows(driver, section_id: str) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr'))"
        ".filter(r => !r.hidden).map(r => r.dataset.submission);", section_id)


def _screenshot(driver, path: Path, width: int = 1400) -> None:
    height = driver.execute_script("return Math.max(document.body.scrollHeight, 600)")
    driver.set_window_size(width, min(height + 120, 6000))
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)


def test_the_chart_is_drawn_from_the_table_and_follows_the_filters(browser, base_url, artifacts_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, base_url + "index.html")
    rows = [r for r in _table_rows(browser, HEADLINE_AUGMENT) if r != "real-only"]  # real-only is the zero line
    points = _chart_points(browser, HEADLINE_AUGMENT)
    assert points is not None and len(points) == len(rows) == 4
    assert sorted(p.split("  [")[0] for p in points) == sorted(rows)
    assert _errors(browser) == []
    _screenshot(browser, artifacts_dir / "reader-index.png")

    Select(browser.find_element(By.ID, "filter-track")).select_by_value("open")  # table and chart together
    rows = [r for r in _table_rows(browser, HEADLINE_AUGMENT) if r != "real-only"]
    points = _chart_points(browser, HEADLINE_AUGMENT)
    assert rows == ["team-b__noisy"]  # the only open-track entry of the constructed board
    assert sorted(p.split("  [")[0] for p in points) == sorted(rows) and "team-a__editor" not in " ".join(points)

    Select(browser.find_element(By.ID, "filter-board")).select_by_value("replace")
    Select(browser.find_element(By.ID, "filter-backbone")).select_by_value("efficientnet-lite0")
    replace = "replace--linear-probe--efficientnet-lite0"
    assert _chart_points(browser, replace) is not None  # drawn once its view is shown
    assert sorted(p.split("  [")[0] for p in _chart_points(browser, replace)) == sorted(
        r for r in _table_rows(browser, replace) if r != "real-only")


@pytest.mark.parametrize("width", [1400, 900])
def test_no_cell_text_overflows(browser, base_url, width):
    for page in PAGES:
        _open(browser, base_url + page)
        browser.set_window_size(width, 900)
        clipped = browser.execute_script(
            "return Array.from(document.querySelectorAll('td, th')).filter(c => c.offsetParent !== null"
            " && c.scrollWidth > c.clientWidth + 1).map(c => c.textContent.trim().slice(0, 40));")
        assert clipped == [], (page, width, clipped)
        if page == "index.html" and width == 1400:  # the headline board fits without scrolling sideways
            assert browser.execute_script(
                "const w = document.querySelector('#' + arguments[0] + ' .table-wrap');"
                "return w.scrollWidth <= w.clientWidth + 1;", HEADLINE_AUGMENT)
    browser.set_window_size(1280, 900)


def _local_links(page: Path) -> list[str]:
    text = page.read_text()
    return [t for t in re.findall(r'(?:href|src)="([^"#:]+)(?:#[^"]*)?"', text) if t]


def test_every_link_works_from_file_urls_and_from_the_server(browser, site, base_url):
    checked = 0
    for page in site.rglob("*.html"):
        for target in _local_links(page):
            resolved = (page.parent / target).resolve()
            assert resolved.is_file(), f"{page.relative_to(site)} links to missing {target}"
            url = base_url + resolved.relative_to(site).as_posix()
            with urllib.request.urlopen(url) as response:  # the same link through `leaderboard serve`
                assert response.status == 200, url
            checked += 1
    assert checked > 50
    for page in PAGES:  # and in the browser from file://, every page with its scripts
        _open(browser, (site / page).as_uri())
        assert browser.find_element("tag name", "h1").text
        assert _errors(browser) == [], page


def test_the_compare_page_shows_the_paired_difference_per_ratio(browser, base_url, artifacts_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, base_url + f"compare.html#{HEADLINE_AUGMENT}/team-a__editor/team-b__noisy")
    cells = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
             for tr in browser.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")]
    assert [c[0] for c in cells] == ["mean over ratios", "1:1", "1:2", "1:3", "1:4"]
    assert all(c[3] == "A better" for c in cells)  # +15 against -15 points on every ratio
    chart = browser.execute_script("return document.getElementById('compare-chart').data[0].x")
    assert chart == ["mean over ratios", "1:1", "1:2", "1:3", "1:4"]
    _screenshot(browser, artifacts_dir / "reader-compare.png")
    Select(browser.find_element(By.ID, "compare-a")).select_by_value("team-b__noisy")
    Select(browser.find_element(By.ID, "compare-b")).select_by_value("team-a__editor")
    readings = [tr.find_elements(By.TAG_NAME, "td")[3].text for tr in browser.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")]
    assert set(readings) == {"B better"}  # swapping A and B flips the sign
    assert _errors(browser) == []


@pytest.mark.parametrize("page, name", [("submissions/team-a__editor/index.html", "reader-entry"),
                                        ("methodology.html", "reader-methodology")])
def test_screenshots_of_an_entry_and_the_methodology(browser, base_url, artifacts_dir, page, name):
    _open(browser, base_url + page)
    assert _errors(browser) == []
    _screenshot(browser, artifacts_dir / f"{name}.png")


def test_the_repository_board_says_its_baselines_await_the_official_run(browser, tmp_path, artifacts_dir):
    from selenium.webdriver.common.by import By

    from leaderboard.site import build_site

    site = build_site(Path(__file__).resolve().parents[2] / "submissions", tmp_path / "site", tasks=[])
    _open(browser, (site / "index.html").as_uri())
    assert "no records of the shipped baselines" in browser.find_element(By.ID, "baselines-missing").text
    pending = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#pending li a")]
    assert pending == ["baseline__classic", "baseline__cutmix", "baseline__duplicate", "baseline__mixup"]
    assert _errors(browser) == []
    _screenshot(browser, artifacts_dir / "reader-repository-board.png")
