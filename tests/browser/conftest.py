"""Headless Chromium (Debian's chromium + chromium-driver) driven by Selenium, against a local server.

Browser tests skip with a reason when chromium or chromedriver is absent
(`scripts/setup.sh --system` installs them as root). Pages are served from a 127.0.0.1 http.server
thread; nothing leaves the machine (background networking, sync and component updates are off).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
#: Screenshots for a person to look at (gitignored).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _chromium() -> str | None:
    return next((path for path in CHROMIUM_CANDIDATES if Path(path).exists()), None) or shutil.which("chromium")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium WebDriver with browser console logging on, or a skip with the reason."""
    binary = _chromium()
    if binary is None or not CHROMEDRIVER.exists():
        pytest.skip("chromium/chromedriver not installed (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def serve_dir():
    """serve_dir(path) -> base URL of a 127.0.0.1 http.server thread serving `path` (stopped after the module)."""
    from leaderboard.cli import serve

    servers = []

    def start(path: Path) -> str:
        server = serve(Path(path), "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        host, port = server.server_address[:2]
        return f"http://{host}:{port}/"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
