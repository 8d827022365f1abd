"""Task datasets: the record (parquet + manifest + card) and its builders (xbd, imagefolder, demo).

    from benchmark.tasks import load_task
    task = load_task("path/to/task")          # or a Hub repo id, with revision="<commit>"
    refs = task.image_refs("train_real")       # ImageRef per row, no decoding
    y = task.labels("train_real")

See docs/RECORDS.md (section 1) for the folder format and docs/TASKS.md for building tasks.
"""

from .record import (
    COLUMNS,
    SPLITS,
    TASK_SCHEMA_VERSION,
    Task,
    TaskImage,
    compute_test_manifest_hash,
    load_local_task,
    load_task,
    save_task,
)

__all__ = [
    "COLUMNS",
    "SPLITS",
    "TASK_SCHEMA_VERSION",
    "Task",
    "TaskImage",
    "build_demo_task",
    "build_imagefolder_task",
    "build_xbd_task",
    "compute_test_manifest_hash",
    "edit_image",
    "load_local_task",
    "load_task",
    "save_task",
]


def __getattr__(name: str):
    # Builders load lazily: `load_task` users need not import the renderers.
    if name in ("build_demo_task", "edit_image"):
        from . import demo

        return getattr(demo, name)
    if name == "build_imagefolder_task":
        from .imagefolder import build_imagefolder_task

        return build_imagefolder_task
    if name == "build_xbd_task":
        from .xbd import build_xbd_task

        return build_xbd_task
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
