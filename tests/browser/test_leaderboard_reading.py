"""What a reader sees, in headless Chromium: charts drawn from the table rows and following the filters,
no clipped cell and no table scrolling sideways at 1400 and 900 px, every link working from file:// and
from `leaderboard serve`, the compare page, the per-class Δ F1 heat map with its CIs, the Replace
board's effective-real-images headline, the diagnostic-vs-Δ page, and screenshots of the index, an
entry, the compare page, the methodology page and the diagnostics page (test-artifacts/, for a person
to look at)."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

HEADLINE_AUGMENT = "augment--linear-probe--all"
PAGES = ["index.html#*/linear-probe/all/*", "index.html#*/linear-probe/efficientnet-lite0/*", "methodology.html",
         "compare.html", "diagnostics.html", "submissions/team-a__editor/index.html",
         "submissions/baseline__classic/index.html", "submissions/team-b__noisy/index.html"]
#: Constructed diagnostics of two entries (tests.boards.constructed_diagnostics); the others store none.
DIAGNOSED = {"team-a__editor": {"kid": 0.02, "precision": 0.7}, "baseline__classic": {"kid": 0.01, "precision": 0.8},
             "team-b__noisy": {"kid": 0.05, "precision": 0.3}}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    import dataclasses

    from leaderboard.site import build_site
    from tests.boards import EXAMPLE_PLANS, make_example_tree

    root = tmp_path_factory.mktemp("reading")
    plans = tuple(dataclasses.replace(p, diagnostics=DIAGNOSED.get(p.submission_id)) for p in EXAMPLE_PLANS)
    make_example_tree(root / "submissions", plans, seeds=(0, 1), per_class=10, curve={10: 0.3, 25: 0.45, 50: 0.55})
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
def test_no_cell_text_overflows_and_no_table_scrolls_sideways(browser, base_url, width):
    browser.set_window_size(width, 900)
    for page in PAGES:  # the index with every board shown (suite and per backbone)
        _open(browser, base_url + page)
        clipped = browser.execute_script(
            "return Array.from(document.querySelectorAll('td, th')).filter(c => c.offsetParent !== null"
            " && c.scrollWidth > c.clientWidth + 1).map(c => c.textContent.trim().slice(0, 40));")
        assert clipped == [], (page, width, clipped)
        tables = browser.execute_script("return Array.from(document.querySelectorAll('.table-wrap'))"
                                        ".filter(w => w.offsetParent !== null).length")
        scrolling = browser.execute_script(
            "return Array.from(document.querySelectorAll('.table-wrap')).filter(w => w.offsetParent !== null"
            " && w.scrollWidth > w.clientWidth + 1).map(w => w.querySelector('table').id || w.closest('section').id"
            " + ': ' + w.scrollWidth + ' > ' + w.clientWidth);")
        assert tables > 0 and scrolling == [], (page, width, scrolling)
    browser.set_window_size(1280, 900)


def test_the_replace_board_leads_with_what_each_set_is_worth_in_real_images(browser, base_url):
    _open(browser, base_url + "index.html#replace/linear-probe/all/*")
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('#replace--linear-probe--all tbody tr')).map("
        "r => [r.dataset.submission, r.querySelector('td.worth').textContent.trim(), r.querySelector('td.worth').title]);")
    worth = {name: (text, title) for name, text, title in cells}
    assert worth["real-only"][0] == "—"
    text, title = worth["team-a__editor"]
    assert re.fullmatch(r"(\d+|[<>] \d+) \[(\d+|[<>] \d+), (\d+|[<>] \d+)\]", text)
    assert title == f"400 synthetic per class are worth {text} real images per class"
    assert "Worth" in browser.find_element("css selector", "#replace--linear-probe--all th[data-column=worth]").text


def test_the_per_class_delta_heat_map_is_centred_at_zero_with_its_cis(browser, base_url):
    _open(browser, base_url + "submissions/team-a__editor/index.html")
    trace = browser.execute_script("const d = document.querySelector('div.heatmap').data[0];"
                                   "return {zmid: d.zmid, zmin: d.zmin, zmax: d.zmax, y: d.y, ci: d.customdata, text: d.text};")
    assert trace["zmid"] == 0 and trace["zmin"] == -trace["zmax"]
    assert trace["y"][:4] == ["synthetic@1", "synthetic@2", "synthetic@3", "synthetic@4"] and "real" not in trace["y"]
    assert all(re.fullmatch(r"\[[+\u2212]\d+\.\d, [+\u2212]\d+\.\d\]", ci) for row in trace["ci"] for ci in row)
    table = browser.execute_script("return document.querySelectorAll('table.per-class-table tbody tr').length")
    assert table == len(trace["y"])
    assert _errors(browser) == []


def test_the_diagnostics_page_plots_a_diagnostic_against_delta_and_follows_the_filters(browser, base_url, artifacts_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, base_url + f"diagnostics.html#{HEADLINE_AUGMENT}/kid/*")
    chart = browser.execute_script("const d = document.getElementById('diag-chart').data[0]; return {x: d.x, y: d.y, text: d.text};")
    assert sorted(chart["text"]) == sorted(DIAGNOSED)
    assert dict(zip(chart["text"], chart["x"])) == {name: values["kid"] for name, values in DIAGNOSED.items()}
    rows = [tr.get_attribute("data-submission") for tr in browser.find_elements(By.CSS_SELECTOR, "#diag-table tbody tr")]
    assert sorted(rows) == sorted(DIAGNOSED)
    assert "not plotted" in browser.find_element(By.ID, "diag-missing").text  # baseline__duplicate: not computed
    _screenshot(browser, artifacts_dir / "reader-diagnostics.png")
    Select(browser.find_element(By.ID, "diag-track")).select_by_value("open")
    assert browser.execute_script("return document.getElementById('diag-chart').data[0].text") == ["team-b__noisy"]
    Select(browser.find_element(By.ID, "diag-name")).select_by_value("precision")
    assert browser.execute_script("return document.getElementById('diag-chart').data[0].x") == [0.3]
    assert _errors(browser) == []


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
        _open(browser, (site / page.split("#")[0]).as_uri())
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
