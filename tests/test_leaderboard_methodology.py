"""The methodology page states the numbers of the task on the board (never the protocol's constants), the
rank rule, the smallest detectable Δ, and how to cite the benchmark (the same as CITATION.cff)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from benchmark import __version__
from leaderboard.ranking import RANK_RULE
from leaderboard.site import BIBTEX, CITATION_AUTHOR, CITATION_TITLE, build_site
from tests.boards import EXAMPLE_PLANS, make_example_tree


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("method")
    make_example_tree(root / "submissions", EXAMPLE_PLANS, seeds=(0,), per_class=7)  # 7 test images per class
    return build_site(root / "submissions", root / "site")


def test_the_page_states_the_task_in_use_and_the_detectable_delta(site):
    from markupsafe import escape

    page = (site / "methodology.html").read_text()
    text = re.sub(r"\s+", " ", page)
    assert "has 42 test images (earthquake 7, wildfire 7, volcano 7, storm 7, flooding 7, tsunami 7)" in text
    assert "its records train on 100 real images per class" in text
    assert str(escape(RANK_RULE)) in page
    data = json.loads((site / "leaderboard.json").read_text())
    augment = next(v for v in data["views"] if v["board"] == "augment" and v["headline"])
    half = sorted((e["delta_macro_f1"]["ci"][1] - e["delta_macro_f1"]["ci"][0]) / 2
                  for e in augment["entries"] if not e["is_reference"])
    assert f"about <strong>{round(100 * half[len(half) // 2], 1)} percentage points</strong>" in text


def test_bibtex_on_the_page_and_citation_cff_agree():
    cff = yaml.safe_load((Path(__file__).resolve().parents[1] / "CITATION.cff").read_text())
    assert cff["title"] == CITATION_TITLE and cff["authors"][0]["name"] == CITATION_AUTHOR
    assert cff["version"] == __version__
    assert f"version = {{{__version__}}}" in BIBTEX and CITATION_TITLE in BIBTEX


def test_the_page_carries_the_bibtex_block(site):
    from markupsafe import escape

    assert str(escape(BIBTEX)) in (site / "methodology.html").read_text()
