"""Task datasets: the record (parquet + manifest + card) and its builders (xbd, imagefolder, demo).

    from benchmark.tasks import load_task
    task = load_task("path/to/task")          # or a Hub repo id, with revision="<commit>"
    refs = task.image_refs("train_real")       # ImageRef per row, no decoding
    y = task.labels("train_real")

See docs/RECORDS.md (section 1) for the folder format and docs/TASKS.md for building tasks.
"""

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

#: The names the task record (record.py: parquet, datasets, pyarrow) provides.
_RECORD_NAMES = frozenset(
    {"COLUMNS", "SPLITS", "TASK_SCHEMA_VERSION", "Task", "TaskImage", "compute_test_manifest_hash",
     "load_local_task", "load_task", "save_task"}
)


def __getattr__(name: str):
    # Everything loads on first use: `import benchmark.tasks` (and the `task` command's parser)
    # stays free of datasets and pyarrow, and `load_task` users need not import the renderers.
    if name in _RECORD_NAMES:
        from . import record as module
    elif name in ("build_demo_task", "edit_image"):
        from . import demo as module
    elif name == "build_imagefolder_task":
        from . import imagefolder as module
    elif name == "build_xbd_task":
        from . import xbd as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
