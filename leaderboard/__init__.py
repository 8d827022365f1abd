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

__all__ = ["LeaderboardError", "Problem", "TaskTruth", "Tree", "build_site", "load_task_truths", "validate_tree"]


def __getattr__(name: str):
    # Loaded on first use, so that `import leaderboard` (and the `leaderboard` command's parser)
    # imports neither scikit-learn nor matplotlib.
    if name == "build_site":
        from . import site as module
    elif name in __all__:
        from . import tree as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
