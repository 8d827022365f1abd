"""The static site: files, machine-readable boards, methodology from the registries, determinism, safety."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import threading
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import escape

from benchmark.protocol import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, PROTOCOLS, SETTINGS
from leaderboard import LeaderboardError
from leaderboard.ranking import RANK_RULE
from leaderboard.site import DEMO_LABEL, SITE_MARKER, build_site
from tests.boards import EXAMPLE_PLANS, Plan, copy_tree, files_content_hash, make_example_tree

PLANS = tuple(p for p in EXAMPLE_PLANS if p.submission_id in ("team-a__editor", "team-b__noisy", "baseline__classic"))


@pytest.fixture(scope="module")
def tree_dir(tmp_path_factory) -> Path:
    return make_example_tree(tmp_path_factory.mktemp("tree") / "submissions", PLANS, seeds=(0,), per_class=10)


@pytest.fixture(scope="module")
def site(tree_dir, tmp_path_factory) -> Path:
    return build_site(tree_dir, tmp_path_factory.mktemp("out") / "site")


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_site_has_every_page_plot_and_asset(site):
    for relative in ("index.html", "methodology.html", "leaderboard.json", "leaderboard.csv", SITE_MARKER,
                     "static/leaderboard.css", "static/leaderboard.js"):
        assert (site / relative).is_file(), relative
    for plan in PLANS:
        page = site / "submissions" / plan.submission_id
        assert (page / "index.html").is_file()
        for kind in ("ratios", "confusion", "per-class"):
            for suffix in (".svg", ".png"):
                assert (page / "plots" / f"linear-probe--efficientnet-lite0-{kind}{suffix}").is_file()
        assert len(list((page / "thumbs").glob("*.png"))) == 6  # one per class
    assert (site / "plots" / "augment--linear-probe--all-board.svg").is_file()
    index = (site / "index.html").read_text()
    assert "cdn" not in index.lower() and "https://" not in index  # nothing remote: works offline, from file://


def test_every_local_link_and_image_resolves(site):
    import re

    for page in site.rglob("*.html"):
        for target in re.findall(r'(?:href|src|srcset)="([^"#:]+)"', page.read_text()):
            assert (page.parent / target).resolve().exists(), f"{page.relative_to(site)} links to missing {target}"


def test_leaderboard_json_and_csv_hold_the_ranked_boards(site):
    data = json.loads((site / "leaderboard.json").read_text())
    assert data["is_demo"] and data["note"] == DEMO_LABEL
    augment = next(v for v in data["views"] if v["board"] == "augment" and v["headline"])
    assert [(e["name"], e["rank_label"], e["verdict"]) for e in augment["entries"]] == [
        ("team-a__editor", "1", "helps"),
        ("baseline__classic", "2", "no significant effect"),
        ("real-only", "reference", "reference"),
        ("team-b__noisy", "3", "hurts"),
    ]
    assert [e["rank_interval"] for e in augment["entries"]] == [[1, 1], [2, 2], None, [3, 3]]
    assert all("best_setting" not in e and "best_ratio" not in e for e in augment["entries"])
    top = augment["entries"][0]
    assert data["ci_method"] == "bootstrap over seeds and test images"
    assert top["significantly_better"] == [] and "team-b__noisy" in top["significantly_worse"]
    # the submission page shows the same comparisons in its standing table
    page = (site / "submissions" / "team-b__noisy" / "index.html").read_text()
    worse = re.search(r"significantly worse than ([^.]*)\.", page.split("Standing", 1)[1]).group(1)
    assert "team-a__editor" in worse.split(", ")
    lo, hi = top["delta_macro_f1"]["ci"]
    assert lo <= top["delta_macro_f1"]["point"] <= hi and lo > 0
    assert set(top["per_setting"]) == {f"mixed@{k}" for k in (1, 2, 3, 4)}
    table = pd.read_csv(site / "leaderboard.csv")
    headline = table[(table.board == "augment") & table.headline]
    assert list(headline["name"]) == [e["name"] for e in augment["entries"]]
    assert headline["delta_macro_f1"].iloc[0] == pytest.approx(top["delta_macro_f1"]["point"], abs=1e-6)
    assert {"accuracy_lo", "accuracy_hi", "macro_f1_lo", "verdict", "status", "harness_versions"} <= set(table.columns)


def test_demo_results_are_labelled_on_every_page(site):
    for page in site.rglob("*.html"):
        assert DEMO_LABEL in page.read_text(), page


def test_a_real_task_board_is_not_labelled_a_demo(tmp_path):
    task = {"name": "xbd-disaster6", "revision": "0123abcd", "test_manifest_hash": "a" * 64}
    root = make_example_tree(tmp_path / "submissions", PLANS[:1], seeds=(0,), per_class=5, task=task)
    site = build_site(root, tmp_path / "site")
    assert DEMO_LABEL not in (site / "index.html").read_text()
    assert json.loads((site / "leaderboard.json").read_text())["is_demo"] is False


def test_methodology_page_is_generated_from_the_protocol_registry(site):
    text = (site / "methodology.html").read_text()
    for name in SETTINGS:
        assert f"<code>{name}</code>" in text
    for name, spec in PROTOCOLS.items():
        assert f"<code>{name}</code>" in text and escape(spec["description"]) in text
    assert ", ".join(str(c) for c in PROTOCOLS["linear-probe"]["C_grid"]) in text
    assert f"{BOOTSTRAP_RESAMPLES} resamples" in text and str(BOOTSTRAP_SEED) in text
    assert escape(RANK_RULE) in text
    assert "percentile bootstrap intervals over seeds and test images" in text
    assert "or unequal seeds across its" in text


def test_rebuilding_an_unchanged_board_changes_no_byte(tree_dir, site, tmp_path):
    again = build_site(tree_dir, tmp_path / "again")
    assert _digest(again) == _digest(site)


def test_a_strict_build_with_a_problem_leaves_the_previous_site_in_place(tree_dir, tmp_path):
    tree = tmp_path / "submissions"
    copy_tree(tree_dir, tree)
    site = build_site(tree, tmp_path / "site")
    before = _digest(site)
    (tree / "team-a__editor" / "results" / "efficientnet-lite0__linear-probe.json").write_text("{ broken")
    with pytest.raises(LeaderboardError, match="efficientnet-lite0__linear-probe.json: not valid JSON"):
        build_site(tree, site, strict=True)
    assert _digest(site) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site")]  # no temporary folder left
    # Without strict, the rest of the board is published and the broken record is listed as not shown.
    build_site(tree, site)
    index = (site / "index.html").read_text()
    assert "Not shown (1)" in index and "team-a__editor/results/efficientnet-lite0__linear-probe.json" in index
    data = json.loads((site / "leaderboard.json").read_text())
    assert [p["shown_as"] for p in data["not_shown"]] == ["not shown"]
    headline = next(v for v in data["views"] if v["board"] == "augment" and v["headline"])
    assert "team-a__editor" not in [e["name"] for e in headline["entries"]]
    assert (site / "submissions" / "team-b__noisy" / "index.html").is_file()


def test_build_refuses_to_replace_a_folder_that_is_not_a_site(tree_dir, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(LeaderboardError, match="not a leaderboard site"):
        build_site(tree_dir, precious)
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_participant_text_is_escaped_and_paths_stay_inside_the_submission(tmp_path):
    evil = Plan("team-x__evil", "<script>alert(1)</script>", mixed_change=0.0, synthetic_accuracy=0.5,
                generator={"name": "<img src=x onerror=alert(2)>", "version": "1", "link": "javascript:alert(3)"})
    root = make_example_tree(tmp_path / "submissions", (evil,), seeds=(0,), per_class=5)
    outside = tmp_path / "outside.png"
    shutil.copy(root / "team-x__evil" / "images" / "storm" / "0000.png", outside)
    metadata = root / "team-x__evil" / "metadata.jsonl"
    rows = [json.loads(line) for line in metadata.read_text().splitlines()]
    rows = [{**row, "file_name": "../../outside.png"} if row["label"] == "storm" else row for row in rows]
    metadata.write_text("".join(json.dumps(row) + "\n" for row in rows))
    record_file = root / "team-x__evil" / "results" / "efficientnet-lite0__linear-probe.json"
    record = json.loads(record_file.read_text())
    record["submission"]["content_hash"] = files_content_hash(root / "team-x__evil")  # as if run on these files
    record_file.write_text(json.dumps(record))
    site = build_site(root, tmp_path / "site")
    page = (site / "submissions" / "team-x__evil" / "index.html").read_text()
    index = (site / "index.html").read_text()
    for text in (page, index):
        assert "<script>alert" not in text and "<img src=x" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert 'href="javascript:' not in page
    thumbs = sorted(p.name for p in (site / "submissions" / "team-x__evil" / "thumbs").iterdir())
    assert len(thumbs) == 5  # the storm sample pointing outside the submission is not read


def test_an_empty_tree_builds_an_empty_board_and_pending_submissions_are_listed(tmp_path):
    root = make_example_tree(tmp_path / "submissions", PLANS[:1], seeds=(0,), per_class=5)
    shutil.rmtree(root / PLANS[0].submission_id / "results")
    site = build_site(root, tmp_path / "site")
    index = (site / "index.html").read_text()
    assert "No results yet" in index and "Awaiting the official run" in index
    assert (site / "submissions" / PLANS[0].submission_id / "index.html").is_file()


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    from leaderboard.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_validate_and_build(tree_dir, tmp_path, capsys):
    assert _cli(["leaderboard", "validate", "--submissions", str(tree_dir)]) == 0
    out = capsys.readouterr().out
    assert "3 submissions, 3 result records shown on demo-constructed@local" in out and "ok" in out
    broken = tmp_path / "submissions"
    copy_tree(tree_dir, broken)
    (broken / "team-b__noisy" / "submission.yaml").unlink()
    assert _cli(["leaderboard", "validate", "--submissions", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "1 problem(s)" in out and "team-b__noisy/submission.yaml: missing" in out
    assert _cli(["leaderboard", "build", "--submissions", str(broken), "--out", str(tmp_path / "site"), "--strict"]) == 1
    assert not (tmp_path / "site").exists()
    assert _cli(["leaderboard", "build", "--submissions", str(broken), "--out", str(tmp_path / "site")]) == 0
    assert (tmp_path / "site" / "index.html").is_file()


def test_cli_serve_answers_on_localhost(site):
    from leaderboard.cli import serve

    server = serve(site, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        with urllib.request.urlopen(f"http://{host}:{port}/index.html", timeout=10) as response:
            assert response.status == 200 and b"Augment" in response.read()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
