"""One board = one comparability identity: records that were not scored the same way never share a table.

A board's identity is its task (name, revision, test-manifest hash: one per tree, leaderboard.tree),
the configuration of each backbone (weights, revision, preprocessing, input size, feature precision), each protocol's
parameters, and the scoring version the record was scored with (benchmark.results.scoring_version:
the board recomputes metrics and CIs from the stored predictions itself, but a record's stored
diagnostics are its own version's, so records of two scoring versions never share a board).
Records of another test split (test-manifest hash) of the task are refused before this, naming
`test_manifest_hash` (leaderboard.tree): their test labels are not the board's.

For each (backbone, protocol) the configuration most records use (baselines' and official records
first) is the main board's. A record with another configuration goes to a board of its own, named
by what differs from the main board (e.g. "input size 96 px (main board: 224 px)"); records that
differ in the same way share that board. A record that predates `backbone.input_size` (schema 2)
is compared on its other fields: its preprocessing id names the size it used. Each board is aggregated, ranked and published on its own,
so a Δ is never taken between records of different identities.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

from benchmark.results import scoring_version

from .tree import Record, Tree

#: The backbone fields that change the features a classifier sees.
#: `precision`: features computed in bf16 on a GPU are not the CPU's float32 features (the grid
#: caches and identifies them apart), so their records do not share a board either.
BACKBONE_FIELDS = ("weights", "revision", "preprocessing", "input_size", "precision")
_FIELD_NAMES = {"input_size": "input size", "preprocessing": "preprocessing", "weights": "weights",
                "revision": "weights revision", "precision": "feature precision", "params": "protocol parameters", "scoring": "scoring version"}

#: Fields older records may lack (schema 2 had no input_size): compared only where present.
_OPTIONAL_FIELDS = ("input_size", "precision")

#: (field, value) pairs of a record's configuration, the values as canonical text.
Config = tuple[tuple[str, str], ...]


def record_config(record: Record) -> Config:
    backbone = record.data["backbone"]
    fields = [(name, json.dumps(backbone.get(name), sort_keys=True)) for name in BACKBONE_FIELDS]
    fields.append(("params", json.dumps(record.data["protocol"].get("params") or {}, sort_keys=True)))
    fields.append(("scoring", json.dumps(scoring_version(record.data))))
    return tuple(fields)


def _shown(name: str, value: str) -> str:
    parsed = json.loads(value)
    if name == "input_size" and isinstance(parsed, int):
        return f"{parsed} px"
    return "none" if parsed is None else parsed if isinstance(parsed, str) else value


@dataclass
class Board:
    """A tree holding only the records of one identity, with what sets it apart from the main board."""

    tree: Tree
    slug: str = ""  # "" for the main board; else the folder name under boards/
    differs: list[str] = dataclasses.field(default_factory=list)  # human-readable differences

    @property
    def is_main(self) -> bool:
        return not self.slug

    @property
    def title(self) -> str:
        return "main board" if self.is_main else "; ".join(self.differs)


def split_by_identity(tree: Tree) -> list[Board]:
    """The main board, then one board per other identity (in name order); [main] when all agree."""
    by_pair: dict[tuple[str, str], dict[Config, list[tuple[Record, bool]]]] = {}
    for submission in tree.submissions:
        for record in submission.records.values():
            configs = by_pair.setdefault((record.backbone, record.protocol), {})
            configs.setdefault(record_config(record), []).append((record, bool(submission.baseline)))
    main: dict[tuple[str, str], Config] = {}
    for pair, configs in by_pair.items():
        # The baselines' configuration first, then the official records', then the most records'.
        main[pair] = max(configs, key=lambda c: (
            sum(b for _, b in configs[c]), sum(r.official for r, _ in configs[c]), len(configs[c]), c))
    groups: dict[tuple[str, ...], set[str]] = {}
    for pair, configs in by_pair.items():
        base = dict(main[pair])
        for config, members in configs.items():
            differs = tuple(
                f"{_FIELD_NAMES[name]} {_shown(name, value)} (main board: {_shown(name, base[name])})"
                for name, value in config if base[name] != value and not (name in _OPTIONAL_FIELDS and value == "null")
            )
            if differs:
                groups.setdefault(differs, set()).update(str(r.path) for r, _ in members)
    if not groups:
        return [Board(tree)]
    off_main = set().union(*groups.values())
    boards = [Board(_subtree(tree, lambda r: str(r.path) not in off_main, main_board=True))]
    for differs in sorted(groups):
        paths = groups[differs]
        boards.append(Board(_subtree(tree, lambda r, p=paths: str(r.path) in p, main_board=False), _slug(differs), list(differs)))
    return boards


def _subtree(tree: Tree, keep, main_board: bool) -> Tree:
    """The tree with only the records `keep` accepts; the main board also keeps entries with no records."""
    submissions = []
    for submission in tree.submissions:
        records = {key: r for key, r in submission.records.items() if keep(r)}
        if records or (main_board and not submission.records):
            submissions.append(dataclasses.replace(submission, records=records))
    problems = tree.problems if main_board else [
        p for p in tree.problems if any(Path(p.path) == s.path or Path(p.path).is_relative_to(s.path) for s in submissions)
    ]
    return dataclasses.replace(tree, submissions=submissions, problems=list(problems))


def _slug(differs: tuple[str, ...]) -> str:
    text = "-".join(d.split(" (main board")[0] for d in differs).lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:80] or "other"
