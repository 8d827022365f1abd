"""What every generator shares: the generation inputs, and writing a submission folder resumably.

`SubmissionWriter` writes `submission.yaml`, then each image atomically (temporary file + rename),
then its `metadata.jsonl` row (appended and fsynced). `metadata.jsonl` is also the progress file:
a generator restarted after an interruption (Ctrl-C, a crash, an API quota) skips every output
whose row is already there and whose file still holds the bytes the row was written for; a half
written last line is dropped. So a long API run can be stopped and resumed at any time.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml
from PIL import Image

from .. import __version__
from ..errors import SynthbenchError
from ..images import ImageDecodeError, encode_png, open_rgb
from ..io import atomic_write_bytes, atomic_write_text, check_replaceable, clip, sha256_bytes, sha256_file
from ..submissions.format import METADATA_FILE, SUBMISSION_FILE, SUBMISSION_SCHEMA_VERSION

log = logging.getLogger(__name__)

#: Where the generator code lives (the `generator.link` of the submissions this package makes).
CODE_LINK = "synthbench: benchmark/generators (this repository)"

#: Inputs exported by `synthbench inputs export` (see benchmark.generators.inputs).
INPUTS_FILE = "inputs.jsonl"


class GeneratorError(SynthbenchError):
    """A generator that cannot run (missing key or weights, API error, bad inputs folder)."""


class GenerationRefused(Exception):
    """One input the generator declined or failed on (safety filter, no image in the reply).

    The run logs it, skips that output and goes on; a rerun retries it.
    """


def derived_seed(seed: int, *keys: Any) -> int:
    """A 31-bit seed from `seed` and stable keys (crc32: unlike hash(), not salted per process)."""
    sequence = np.random.SeedSequence([int(seed)] + [zlib.crc32(str(k).encode()) for k in keys])
    return int(sequence.generate_state(1)[0] & 0x7FFFFFFF)


def rng_for(seed: int, *keys: Any) -> np.random.Generator:
    return np.random.default_rng(derived_seed(seed, *keys))


# ----------------------------------------------------------------------------------------------
# generation inputs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationInput:
    """One pre-disaster image with its target class and prompt."""

    image_id: str
    class_name: str
    prompt: str
    png: bytes
    pair_id: str = ""

    def image(self) -> Image.Image:
        return open_rgb(self.png, name=self.image_id)


def task_generation_inputs(task) -> list[GenerationInput]:
    """The `generation_inputs` split of a loaded task, in split order."""
    refs = task.image_refs("generation_inputs")
    labels = task.labels("generation_inputs")
    prompts = task.column("generation_inputs", "prompt")
    pairs = task.column("generation_inputs", "pair_id")
    return [
        GenerationInput(ref.name, task.classes[int(label)], prompt or "", ref.read_bytes(), pair or "")
        for ref, label, prompt, pair in zip(refs, labels, prompts, pairs)
    ]


def exported_generation_inputs(folder: str | os.PathLike) -> tuple[list[GenerationInput], dict]:
    """Inputs written by `synthbench inputs export` (inputs.jsonl + images), checked by SHA-256.

    Returns the inputs and the export's `task` record ({name, revision}).
    """
    from ..submissions.format import resolve_inside

    folder = Path(folder)
    listing = folder / INPUTS_FILE
    if not listing.is_file():
        raise GeneratorError(f"{listing}: not found (write it with `synthbench inputs export --task T --out {folder}`)")
    task_record_path = folder / "task.json"
    task_record = json.loads(task_record_path.read_text()) if task_record_path.is_file() else {}
    inputs = []
    for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            path, problem = resolve_inside(folder, row["file_name"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise GeneratorError(f"{listing} line {number}: malformed row ({exc})") from None
        if problem:
            raise GeneratorError(f"{listing} line {number}: {problem}")
        data = path.read_bytes()
        if row.get("sha256") and sha256_bytes(data) != row["sha256"]:
            raise GeneratorError(f"{path}: SHA-256 differs from {INPUTS_FILE} (the file changed after export)")
        inputs.append(GenerationInput(row["image_id"], row["class"], row.get("prompt", ""), data, row.get("pair_id", "")))
    if not inputs:
        raise GeneratorError(f"{listing}: lists no inputs")
    return inputs, task_record.get("task", {})


def load_inputs(task_source: str | None, inputs_dir: str | None, revision: str | None = None):
    """(inputs, task record {name, revision}) from a task (folder or Hub id) or an exported folder."""
    if bool(task_source) == bool(inputs_dir):
        raise GeneratorError("give exactly one of --task (a task folder or Hub id) or --inputs (an exported folder)")
    if inputs_dir:
        inputs, record = exported_generation_inputs(inputs_dir)
        if not record.get("name"):
            raise GeneratorError(f"{inputs_dir}: task.json with the task's name and revision is missing")
        return inputs, record
    from ..tasks import load_task

    task = load_task(task_source, revision=revision)
    return task_generation_inputs(task), {"name": task.name, "revision": task.revision}


# ----------------------------------------------------------------------------------------------
# submission.yaml
# ----------------------------------------------------------------------------------------------


def submission_meta(
    *,
    team: str,
    method: str,
    track: str,
    generator: dict[str, str],
    task: dict[str, str],
    contact: str = "synthbench maintainers",
    licence: str = "apache-2.0",
    fine_tuned: dict | None = None,
    kind: str = "images",
    baseline: str | None = None,
    notes: str | None = None,
) -> dict:
    """A submission.yaml mapping in the documented field order."""
    meta: dict[str, Any] = {
        "schema_version": SUBMISSION_SCHEMA_VERSION,
        "id": f"{team}__{method}",
        "team": team,
        "method": method,
        "contact": contact,
        "licence": licence,
        "track": track,
        "kind": kind,
        "generator": {k: str(v) for k, v in generator.items()},
        "fine_tuned": fine_tuned or {"used": False, "data": None},
        "task": {"name": task["name"], "revision": task["revision"]},
    }
    if baseline is not None:
        meta["baseline"] = baseline
    if notes:
        meta["notes"] = notes
    return meta


def team_and_method(folder: str | os.PathLike, default_team: str, default_method: str) -> tuple[str, str]:
    """The (team, method) a library generator writes into `folder`: the folder's own `<team>__<method>`
    name (a submission's id is its folder's name), else the defaults with a warning that
    `synthbench validate` will refuse the folder until it is renamed. The CLI refuses such names."""
    from ..submissions.format import id_from_folder

    try:
        return id_from_folder(folder)
    except SynthbenchError:
        log.warning("%s is not named <team>__<method>: writing id %s__%s, which validate refuses until the "
                    "folder is renamed to it", folder, default_team, default_method)
        return default_team, default_method


def harness_generator(name: str, description: str) -> dict[str, str]:
    return {"name": name, "version": f"synthbench {__version__}", "link": CODE_LINK, "description": description}


# ----------------------------------------------------------------------------------------------
# the writer
# ----------------------------------------------------------------------------------------------


class SubmissionWriter:
    """Write a kind-images submission folder, one image at a time, resumably.

    `done(file_name)` tells whether an output is already complete; `add(...)` writes an image and
    its row; `add_reference(...)` adds another row for an existing file (the duplicate baseline).
    """

    def __init__(self, folder: str | os.PathLike, meta: dict, *, resume: bool = True):
        self.folder = Path(folder)
        self.meta = meta
        self.folder.mkdir(parents=True, exist_ok=True)
        yaml_path = self.folder / SUBMISSION_FILE
        existing = self._existing_meta(yaml_path)
        if existing is not None and not resume:
            raise GeneratorError(f"{self.folder}: already holds a submission (pass --overwrite to replace it)")
        if existing is not None and not self._same_run(existing, meta):
            raise GeneratorError(
                f"{self.folder}: holds a different submission ({existing.get('id')}, generator "
                f"{existing.get('generator')}, task {existing.get('task')}); use another --out or --overwrite"
            )
        atomic_write_text(yaml_path, yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
        self.metadata_path = self.folder / METADATA_FILE
        self.rows: dict[str, dict] = {}
        self._n_rows = 0
        self._load_rows()

    @staticmethod
    def _existing_meta(path: Path) -> dict | None:
        if not path.is_file():
            return None
        try:
            parsed = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    @staticmethod
    def _same_run(old: dict, new: dict) -> bool:
        keys = ("id", "track", "kind", "task", "baseline")
        same_generator = (old.get("generator") or {}).get("name") == new["generator"].get("name")
        return same_generator and all(old.get(k) == new.get(k) for k in keys)

    def _load_rows(self) -> None:
        if not self.metadata_path.is_file():
            return
        text = self.metadata_path.read_text(encoding="utf-8")
        good_lines = []
        for line in text.splitlines(keepends=True):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: dropping a partially written line", self.metadata_path)
                continue
            if not line.endswith("\n"):
                line += "\n"
            good_lines.append(line)
            self.rows.setdefault(row["file_name"], row)
        self._n_rows = len(good_lines)
        if "".join(good_lines) != text:
            atomic_write_text(self.metadata_path, "".join(good_lines))

    def done(self, file_name: str) -> bool:
        """Whether `file_name` has its row and its file still holds the bytes written for it."""
        row = self.rows.get(file_name)
        path = self.folder / file_name
        if row is None or not path.is_file():
            return False
        expected = row.get("sha256")
        return expected is None or sha256_file(path) == expected

    def __len__(self) -> int:
        return self._n_rows

    def add(
        self,
        file_name: str,
        image: Image.Image | bytes,
        *,
        label: str | dict[str, float],
        source_id: str | None,
        prompt: str = "",
        **extra: Any,
    ) -> None:
        """Write `image` (PIL, or encoded PNG/JPEG/WebP bytes) to `file_name`, then its row."""
        from ..submissions.format import file_name_problem

        problem = file_name_problem(file_name)
        if problem:
            raise GeneratorError(problem)
        data = encode_png(image) if isinstance(image, Image.Image) else bytes(image)
        atomic_write_bytes(self.folder / file_name, data)
        self._append({"file_name": file_name, "label": label, "source_id": source_id, "prompt": prompt,
                      "sha256": sha256_bytes(data), **extra})

    def add_reference(self, file_name: str, *, label, source_id: str | None, prompt: str = "", **extra: Any) -> None:
        """Another row for a file already written (only the duplicate baseline does this)."""
        if file_name not in self.rows:
            raise GeneratorError(f"{file_name}: add the file before referencing it again")
        self._append({"file_name": file_name, "label": label, "source_id": source_id, "prompt": prompt,
                      "sha256": self.rows[file_name].get("sha256"), **extra})

    def _append(self, row: dict) -> None:
        line = json.dumps(row, allow_nan=False, ensure_ascii=False) + "\n"
        with open(self.metadata_path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.rows.setdefault(row["file_name"], row)
        self._n_rows += 1


def decode_generated(data: bytes, name: str) -> tuple[bytes, str]:
    """Check that generator output bytes decode safely; return them with the matching extension."""
    try:
        image = open_rgb(data, name=name)
    except ImageDecodeError as exc:
        raise GenerationRefused(f"{name}: the generator returned an undecodable image ({exc})") from None
    del image
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data, ".png"
    if data[:3] == b"\xff\xd8\xff":
        return data, ".jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return data, ".webp"
    raise GenerationRefused(f"{name}: unexpected image container")  # pragma: no cover - open_rgb allows only these


def iter_jobs(inputs: Iterable[GenerationInput], multiplier: int) -> list[tuple[GenerationInput, int, str]]:
    """(input, variant index, output file name without extension) for every wanted output."""
    if multiplier < 1:
        raise GeneratorError(f"multiplier must be at least 1 (got {multiplier})")
    return [
        (item, j, f"images/{item.class_name}/{item.image_id}__{j}")
        for item in inputs
        for j in range(multiplier)
    ]


def run_jobs(
    writer: SubmissionWriter,
    jobs,
    generate_batch,
    *,
    batch_size: int = 1,
    progress: bool | None = None,
    desc: str = "generating",
) -> dict:
    """Generate every job not done yet, `batch_size` at a time; return counts.

    `generate_batch([(input, variant), ...])` returns, per job, `(bytes, extension)` or a
    `GenerationRefused` (that output is skipped, logged and counted; a rerun retries it). Any other
    error stops the run, leaving everything written so far in place for the next run to resume from.
    """
    from tqdm.auto import tqdm

    done_stems = {Path(name).with_suffix("").as_posix() for name in writer.rows if writer.done(name)}
    todo = [job for job in jobs if job[2] not in done_stems]
    counts = {"total": len(jobs), "already_done": len(jobs) - len(todo), "written": 0, "refused": 0}
    # progress None: a bar only on a terminal (tqdm's disable=None), so logs of batch jobs stay clean
    with tqdm(total=len(todo), desc=desc, unit="img", disable=None if progress is None else not progress) as bar:
        for start in range(0, len(todo), max(1, batch_size)):
            batch = todo[start : start + max(1, batch_size)]
            outputs = generate_batch([(item, j) for item, j, _ in batch])
            for (item, j, stem), output in zip(batch, outputs):
                if isinstance(output, GenerationRefused):
                    log.warning("%s variant %d skipped: %s", item.image_id, j, output)
                    counts["refused"] += 1
                    continue
                data, ext = output
                writer.add(f"{stem}{ext}", data, label=item.class_name, source_id=item.image_id, prompt=item.prompt)
                counts["written"] += 1
            bar.update(len(batch))
    if counts["refused"]:
        log.warning("%d output(s) refused or failed; rerun the same command to retry them", counts["refused"])
    return counts


def one_at_a_time(generate_one):
    """Adapt `generate_one(input, variant) -> (bytes, ext)` to the batch interface of run_jobs."""

    def generate_batch(jobs):
        outputs = []
        for item, j in jobs:
            try:
                outputs.append(generate_one(item, j))
            except GenerationRefused as exc:
                outputs.append(exc)
        return outputs

    return generate_batch


def generation_store_root() -> Path:
    """Where unfinished generations keep their progress: `generation/` in the harness cache
    ($SYNTHBENCH_CACHE, else ~/.cache/synthbench), never inside `submissions/`."""
    env = os.environ.get("SYNTHBENCH_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "synthbench") / "generation"


def progress_store(out_dir: str | os.PathLike, meta: dict) -> Path:
    """The progress folder of one generation: same --out, id, generator and task -> same folder."""
    key = json.dumps([os.path.abspath(out_dir), meta.get("id"), meta.get("generator"), meta.get("task")], sort_keys=True)
    return generation_store_root() / f"{Path(out_dir).name}-{sha256_bytes(key.encode())[:12]}"


def _publish(store: Path, out_dir: Path, overwrite: bool) -> None:
    """Move the finished submission from its progress store to `out_dir` in one step."""
    import shutil

    from ..io import atomic_directory

    with atomic_directory(out_dir, overwrite=overwrite, replaces=(SUBMISSION_FILE, "a submission folder")) as tmp:
        tmp.rmdir()
        shutil.move(str(store), str(tmp))  # a rename on one filesystem, else copy then delete


def generate_into_submission(
    out_dir: str | os.PathLike,
    meta: dict,
    jobs,
    generate_batch,
    *,
    store: str | os.PathLike | None = None,
    overwrite: bool = False,
    accept_refused: bool = False,
    batch_size: int = 1,
    progress: bool | None = None,
    desc: str = "generating",
) -> dict:
    """run_jobs into a progress store, then move the submission to `out_dir` once it is complete.

    Nothing appears at `out_dir` until every job is written (or, with `accept_refused`, every job
    not refused), so a failed or interrupted run leaves no half-made submission; the same call
    again resumes from the store (default `progress_store(out_dir, meta)`). Returns run_jobs's
    counts plus `complete` (whether `out_dir` was written) and `store`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise GeneratorError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    if overwrite and out_dir.exists():
        check_replaceable(out_dir, SUBMISSION_FILE, "a submission folder")
    store = Path(store) if store else progress_store(out_dir, meta)
    writer = SubmissionWriter(store, meta, resume=True)
    counts = run_jobs(writer, jobs, generate_batch, batch_size=batch_size, progress=progress, desc=desc)
    counts["store"] = str(store)
    counts["complete"] = not counts["refused"] or accept_refused
    if counts["complete"]:
        _publish(store, out_dir, overwrite)
    return counts


def generate_with_editor(
    editor,
    inputs,
    out_dir: str | os.PathLike,
    meta: dict,
    *,
    multiplier: int = 1,
    prompt_template: str = "{prompt}",
    desc: str = "editing",
    **options: Any,
) -> dict:
    """Edit every generation input `multiplier` times into a submission at `out_dir`.

    `editor(png, prompt, name) -> (bytes, extension)` makes one edit (the API adapters), raising
    GenerationRefused for an output to skip. `prompt_template` may use {prompt} and {class_name}.
    `options`: store, overwrite, accept_refused, progress (see generate_into_submission, whose
    counts this returns).
    """

    def edit(item, variant):
        del variant  # the APIs are not seedable: each call is a fresh sample
        return editor(item.png, prompt_template.format(prompt=item.prompt, class_name=item.class_name), item.image_id)

    return generate_into_submission(out_dir, meta, iter_jobs(inputs, multiplier), one_at_a_time(edit), desc=desc, **options)


# ----------------------------------------------------------------------------------------------
# HTTP APIs (through the providers' own clients; retries by tenacity)
# ----------------------------------------------------------------------------------------------

#: Statuses worth retrying: request timeouts, rate limits and server-side failures.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class TransientAPIError(Exception):
    """A failure worth retrying (rate limit, 5xx, timeout), with the server's Retry-After if any."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off: wait `base * 2**attempt` seconds (at most `max_wait`), or Retry-After."""

    max_retries: int = 6
    base: float = 2.0
    max_wait: float = 120.0
    timeout: float = 300.0


def retry_after_seconds(headers) -> float | None:
    """A numeric Retry-After header in seconds (an HTTP date falls back to the back-off)."""
    try:
        value = (headers or {}).get("retry-after")
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def call_with_retries(call, *, policy: RetryPolicy, what: str):
    """`call()`, retried on TransientAPIError only (tenacity); GeneratorError once retries run out."""
    import tenacity

    def wait(state) -> float:
        suggested = state.outcome.exception().retry_after
        backoff = policy.base * 2 ** (state.attempt_number - 1)
        return min(policy.max_wait, suggested if suggested is not None else backoff)

    def before_sleep(state) -> None:
        log.warning("%s: %s; retrying in %.1f s", what, state.outcome.exception(), state.next_action.sleep)

    try:
        for attempt in tenacity.Retrying(
            stop=tenacity.stop_after_attempt(policy.max_retries + 1), wait=wait, before_sleep=before_sleep,
            retry=tenacity.retry_if_exception_type(TransientAPIError), reraise=True,
        ):
            with attempt:
                return call()
    except TransientAPIError as exc:
        raise GeneratorError(f"{what}: {exc} (gave up after {policy.max_retries + 1} attempts)") from None
    raise AssertionError("unreachable")  # pragma: no cover


def is_timeout(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a client timeout, whichever HTTP library raised it."""
    while exc is not None:
        if any(cls.__name__ in ("TimeoutException", "Timeout", "TimeoutError", "APITimeoutError")
               for cls in type(exc).__mro__):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def unreachable(what: str, base_url: str, exc: BaseException) -> GeneratorError:
    """The error for a host that cannot be reached (DNS, refused connection): not retried."""
    from urllib.parse import urlparse

    cause = exc.__cause__ or exc.__context__ or exc
    return GeneratorError(
        f"{what}: cannot reach {urlparse(base_url).netloc or base_url} ({type(cause).__name__}: {clip(str(cause), 160)}); "
        "check the network connection and --base-url (not retried)"
    )


class APIImageEditor:
    """What the API adapters share: key (argument, else the provider's environment variables),
    base URL (argument, else environment, else the provider's), model and retry policy. Subclasses
    set the class attributes below and define `__call__(png, prompt, name) -> (bytes, extension)`."""

    label = ""  # the API's name in messages
    key_envs: tuple[str, ...] = ()  # environment variables holding the key, first set wins
    base_url_env = ""
    default_base_url = ""
    default_model = ""

    def __init__(
        self, *, api_key: str | None = None, base_url: str | None = None, model: str | None = None,
        policy: RetryPolicy = RetryPolicy(),
    ):
        self.api_key = api_key or next((os.environ[k] for k in self.key_envs if os.environ.get(k)), None)
        if not self.api_key:
            raise GeneratorError(f"no {self.label} API key: set the environment variable {' or '.join(self.key_envs)}")
        self.base_url = (base_url or os.environ.get(self.base_url_env) or self.default_base_url).rstrip("/")
        self.model = model or self.default_model
        self.policy = policy
