"""synthbench: do AI-generated images help a classifier recognise real images?

The harness package. Each stage of the flow lives in its own module and talks to the
next through a documented, versioned record (see docs/RECORDS.md):

    tasks/        task datasets (xbd, imagefolder, demo) -> task folder (parquet + manifest + card)
    submissions/  submission format, validation, leakage gate -> validated Submission
    generators/   baseline generators and generator adapters -> submission folders
    registry      backbone specs, baseline names, device choices: plain data (protocol: the protocol's)
    backbones     loads the registered feature extractors
    features      on-disk feature cache keyed by image SHA-256
    protocols/    linear-probe, fine-tune, zero-shot, checkpoint scoring
    metrics       accuracy / macro-F1 / per-class / confusion, bootstrap CIs
    results       the result record (schema, atomic write, validation)
    grid          settings x ratios x seeds runner, as named stages
    executors/    which runs need work and where they run (local, Slurm); `run` and `run-all`
    pipeline      the demo: the whole flow, offline
    cli           the `synthbench` console script

docs/ARCHITECTURE.md draws the flow and states the import contract (lint-imports checks it).
"""

__version__ = "0.1.0"
