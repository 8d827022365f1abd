"""The synthbench leaderboard: validate the results tree, aggregate, rank, plot, publish a static site.

The flow inside this package is one direction, like the harness's:

    tree       read submissions/<id>/submission.yaml + results/*.json (bounded), validate and verify
               them the way a maintainer's CI does (structure, schema, ground truth from the task,
               content hashes, duplicates, signatures, leakage) -> Tree with its Problems
    identity   one board per comparability identity: records scored differently form their own board
    aggregate  pool runs into board entries (Augment, Replace, Models) per protocol and backbone,
               with bootstrap CIs from benchmark.metrics -> Board views
    ranking    the rank rule (point rank with its interval over the paired bootstrap draws)
    worth      what a set is worth, recomputed: effective real images, per-class Δ F1 with CIs, the
               more-real share; the records' stored diagnostics as rows
    plots      matplotlib figures (SVG + PNG, deterministic) for previews; the pages' charts are
               drawn in the browser with plotly.js, written into the site from the plotly package
    site       Jinja2 pages (index, entries, compare, diagnostics, methodology) + local JS/CSS +
               leaderboard.json/.csv, written atomically
    audit      re-run a sample of a record's runs and compare the predictions
    cli        `synthbench leaderboard build|serve|validate|audit|keygen`

docs/LEADERBOARD.md explains how to read the result; the site's methodology page is generated from
benchmark.protocol so it cannot drift from the code.
"""

import lazy_loader

# Loaded on first use, so that `import leaderboard` (and the `leaderboard` command's parser) imports
# neither scikit-learn nor matplotlib.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "tree": ["LeaderboardError", "Problem", "TaskTruth", "Tree", "load_task_truths", "validate_tree"],
        "site": ["build_site"],
    },
)
