"""What a synthetic set is worth, on the board (leaderboard.worth): per-class Δ F1 with paired CIs, the
Replace board's headline of effective real images (recomputed from the predictions, never read from the
record), the entry's diagnostics ("not computed" when absent), the diagnostic-vs-Δ page, and the
methodology page stating the numbers of the records in use."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape

from benchmark.metrics import effective_real_images
from benchmark.protocol import SETTINGS
from leaderboard.site import build_site
from tests.boards import EXAMPLE_PLANS, make_example_tree

CURVE = {10: 0.3, 25: 0.45, 50: 0.55}
SEEDS = (3, 7)
#: team-a and the classic baseline store diagnostics; team-b and the duplicate baseline do not.
DIAGNOSED = {"team-a__editor": {"kid": 0.02, "precision": 0.7, "vendi_ratio": 0.9},
             "baseline__classic": {"kid": 0.01, "precision": 0.8, "vendi_ratio": 0.6}}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("worth")
    plans = tuple(dataclasses.replace(p, diagnostics=DIAGNOSED.get(p.submission_id)) for p in EXAMPLE_PLANS)
    submissions = make_example_tree(root / "submissions", plans, seeds=SEEDS, per_class=10, curve=CURVE)
    return submissions, build_site(submissions, root / "site")


def _view(site: Path, board: str) -> dict:
    data = json.loads((site / "leaderboard.json").read_text())
    return next(v for v in data["views"] if v["board"] == board and v["headline"])


def _record(submissions: Path, submission_id: str) -> dict:
    return json.loads(next((submissions / submission_id / "results").glob("*.json")).read_text())


def test_effective_real_images_are_recomputed_from_the_predictions(built):
    submissions, site = built
    record = _record(submissions, "team-a__editor")
    runs = {(r["setting"], r["seed"]): np.asarray(r["predictions"]) for r in record["runs"]}
    curve = [{s: runs[(f"real@{n}", s)] for s in SEEDS} for n in CURVE] + [{s: runs[("real", s)] for s in SEEDS}]
    expected = effective_real_images(np.asarray(record["test"]["labels"]), [10, 25, 50, 100], curve,
                                     {s: runs[("synthetic@4", s)] for s in SEEDS}, 6)
    entry = next(e for e in _view(site, "replace")["entries"] if e["name"] == "team-a__editor")
    shown = entry["effective_real"][0]
    assert shown["setting"] == "synthetic@4" and shown["synthetic_per_class"] == SETTINGS["synthetic@4"].synthetic_per_class
    assert (shown["text"], shown["estimate"], shown["ci"]) == (expected["text"], expected["estimate"], expected["ci"])
    index = re.sub(r"\s+", " ", (site / "index.html").read_text())
    point, ci = shown["text"].split(" [")
    assert f'class="worth" title="400 synthetic per class are worth {escape(shown["text"])} real images per class">' \
        f'<span class="point">{escape(point)}</span> <span class="ci">[{escape(ci)}</span></td>' in index
    assert "Worth <small>real images / class</small>" in index


def test_a_stored_effective_real_number_is_not_trusted(built, tmp_path):
    submissions, site = built
    import shutil

    copy = tmp_path / "submissions"
    shutil.copytree(submissions, copy)
    shutil.copytree(submissions.parent / "task", tmp_path / "task")
    path = next((copy / "team-a__editor" / "results").glob("*.json"))
    record = json.loads(path.read_text())
    record["summary"]["synthetic@4"]["effective_real"] = {  # a valid-looking but false claim: worth the whole split
        "estimate": 100.0, "censored": None, "ci": [100.0, 100.0], "ci_censored": [None, None], "text": "100 [100, 100]",
        "curve_n": [10.0, 25.0, 50.0, 100.0], "seeds": list(SEEDS)}
    path.write_text(json.dumps(record))
    other = build_site(copy, tmp_path / "site")
    claimed = next(e for e in _view(other, "replace")["entries"] if e["name"] == "team-a__editor")["effective_real"][0]
    honest = next(e for e in _view(site, "replace")["entries"] if e["name"] == "team-a__editor")["effective_real"][0]
    assert claimed["text"] == honest["text"] != "100 [100, 100]"


def test_per_class_delta_f1_has_paired_cis_that_average_to_the_macro_delta(built):
    submissions, site = built
    from leaderboard.aggregate import build_leaderboard
    from leaderboard.tree import validate_tree
    from leaderboard.worth import PerClassF1

    board = build_leaderboard(validate_tree(submissions))
    per_class = PerClassF1(board.estimator)
    classes = board.tree.classes
    for submission_id in ("team-a__editor", "baseline__classic"):
        profile = board.profiles_of(submission_id)[0]
        for name in ("mixed@1", "synthetic@2"):
            stats = profile.settings[name]
            cells = per_class.delta(stats.runs, stats.baseline, classes)
            assert np.mean([cells[c].point for c in classes]) == pytest.approx(stats.delta_macro_f1.point, abs=1e-12)
            assert all(cells[c].lo <= cells[c].point <= cells[c].hi for c in classes)
    real = board.profiles_of("team-a__editor")[0].settings["real"]
    zero = per_class.delta(real.runs, real.runs, classes)  # a run against itself: exactly 0, no width
    assert {(e.point, e.lo, e.hi) for e in zero.values()} == {(0.0, 0.0, 0.0)}
    page = (site / "submissions" / "team-a__editor" / "index.html").read_text()
    assert 'class="chart heatmap"' in page and page.count("<tr><td><code>mixed@") >= 4
    chart = json.loads(re.search(r'<script type="application/json" class="heatmap-data">(.*?)</script>', page).group(1))
    assert chart["classes"] == classes and "mixed@1" in chart["settings"] and "real" not in chart["settings"]
    assert all(text.startswith("[") for row in chart["ci"] for text in row)


def test_the_entry_page_shows_its_diagnostics_or_says_not_computed(built):
    _, site = built
    page = re.sub(r"\s+", " ", (site / "submissions" / "team-a__editor" / "index.html").read_text())
    assert "<code>kid</code>" in page and '<span class="point">0.02</span> <span class="ci">[-0.03, 0.07]</span>' in page
    assert "not computed" in page  # its null diagnostics (e.g. fd)
    other = re.sub(r"\s+", " ", (site / "submissions" / "team-b__noisy" / "index.html").read_text())
    assert "not computed (the record stores no diagnostics" in other and "diagnostics-table" not in other


def test_the_diagnostics_page_pairs_each_entry_s_diagnostic_with_its_delta(built):
    _, site = built
    page = (site / "diagnostics.html").read_text()
    views = json.loads(re.search(r'<script type="application/json" id="diagnostics-data">(.*?)</script>', page, re.S).group(1))
    augment = next(v for v in views if v["id"] == "augment--linear-probe--all")
    entries = {e["name"]: e for e in augment["entries"]}
    board = {e["name"]: e for e in _view(site, "augment")["entries"]}
    for name, values in DIAGNOSED.items():
        assert entries[name]["diagnostics"]["kid"][0] == values["kid"]
        assert entries[name]["delta"] == [board[name]["delta_macro_f1"]["point"], *board[name]["delta_macro_f1"]["ci"]]
    assert entries["team-b__noisy"]["diagnostics"] == {}  # listed, not plotted: "not computed"
    assert "real-only" not in entries


def test_the_methodology_states_the_records_numbers_not_the_protocol_defaults(built):
    _, site = built
    text = re.sub(r"\s+", " ", (site / "methodology.html").read_text())
    assert "with seeds <code>3, 7</code>" in text and "0, 1, 2, 3, 4" not in text
    assert "the curve's points are n = 10, 25, 50 real images per class, then <code>real</code> (100 per class)" in text
    assert '"&lt; 10"' in text and '"&gt; 100"' in text
    assert "ranking on every ratio needs 400 synthetic images per class" in text
    assert re.search(r"<td><code>real@25</code> <small>learning curve</small></td><td>—</td> <td>25</td><td>0</td><td>2</td>", text)
    for name in ("kid", "precision", "memorisation_rate", "edit_strength"):
        assert f"<td><code>{name}</code></td>" in text


def test_the_augment_board_shows_each_entry_beside_more_real_images(tmp_path):
    submissions = make_example_tree(tmp_path / "submissions", EXAMPLE_PLANS[:2], seeds=(0, 1), per_class=10,
                                    more_real={1: 0.3, 2: 0.3, 3: 0.3, 4: 0.0})
    site = build_site(submissions, tmp_path / "site")
    entry = next(e for e in _view(site, "augment")["entries"] if e["name"] == "team-a__editor")
    rows = {row["ratio"]: row for row in entry["more_real"]}
    assert list(rows) == ["1:1", "1:2", "1:3", "1:4", "mean over ratios"]
    one = rows["1:1"]  # +15 points of the entry against +30 of more real images: about half the real-data gain
    assert one["share"]["point"] == pytest.approx(one["delta_macro_f1"]["point"] / one["more_real_delta_macro_f1"]["point"])
    assert 0.3 < one["share"]["point"] < 0.7 and one["share"]["ci"][0] <= one["share"]["point"] <= one["share"]["ci"][1]
    # more real images that give no clear gain: no share (the harness's rule), and the reason says so
    assert rows["1:4"]["share"] is None and "no clear gain" in rows["1:4"]["share_note"]
    index = (site / "index.html").read_text()
    assert "Share of the <small>more-real gain</small>" in index
    page = (site / "submissions" / "team-a__editor" / "index.html").read_text()
    assert 'id="more-real-table"' in page and "no clear gain" in page
    plain = make_example_tree(tmp_path / "plain" / "submissions", EXAMPLE_PLANS[:2], seeds=(0,), per_class=10)
    assert "more-real" not in (build_site(plain, tmp_path / "plain" / "site") / "index.html").read_text()
