"""Task datasets: the record (parquet + manifest + card) and its builders (xbd, imagefolder, demo).

    from benchmark.tasks import load_task
    task = load_task("path/to/task")          # or a Hub repo id, with revision="<commit>"
    refs = task.image_refs("train_real")       # ImageRef per row, no decoding
    y = task.labels("train_real")

See docs/RECORDS.md (section 1) for the folder format and docs/TASKS.md for building tasks.
"""

import lazy_loader

# Everything loads on first use: `import benchmark.tasks` (and the `task` command's parser) stays
# free of datasets and pyarrow, and `load_task` users need not import the renderers.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "record": ["COLUMNS", "SPLITS", "TASK_SCHEMA_VERSION", "Task", "TaskImage", "compute_test_manifest_hash",
                   "load_local_task", "load_task", "save_task"],
        "demo": ["build_demo_task", "edit_image"],
        "imagefolder": ["build_imagefolder_task"],
        "xbd": ["build_xbd_task"],
    },
)
