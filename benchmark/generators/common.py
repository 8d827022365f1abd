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
from ..io import atomic_write_bytes, atomic_write_text, check_replaceable, sha256_bytes, sha256_file
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
    progress: bool = True,
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
    with tqdm(total=len(todo), desc=desc, unit="img", disable=not progress) as bar:
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


def generate_with_editor(
    editor,
    inputs,
    out_dir: str | os.PathLike,
    meta: dict,
    *,
    multiplier: int = 1,
    prompt_template: str = "{prompt}",
    progress: bool = True,
    desc: str = "editing",
) -> dict:
    """Edit every generation input `multiplier` times into a resumable submission at `out_dir`.

    `editor(png, prompt, name) -> (bytes, extension)` makes one edit (the API adapters), raising
    GenerationRefused for an output to skip. `prompt_template` may use {prompt} and {class_name}.
    Returns run_jobs's counts.
    """
    writer = SubmissionWriter(out_dir, meta, resume=True)

    def edit(item, variant):
        del variant  # the APIs are not seedable: each call is a fresh sample
        return editor(item.png, prompt_template.format(prompt=item.prompt, class_name=item.class_name), item.image_id)

    return run_jobs(writer, iter_jobs(inputs, multiplier), one_at_a_time(edit), progress=progress, desc=desc)


# ----------------------------------------------------------------------------------------------
# HTTP APIs
# ----------------------------------------------------------------------------------------------

#: Statuses worth retrying: rate limits, timeouts and server-side failures.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off: wait `base * 2**attempt` seconds (at most `max_wait`), or Retry-After."""

    max_retries: int = 6
    base: float = 2.0
    max_wait: float = 120.0
    timeout: float = 300.0

    def wait(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(self.max_wait, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: fall back to the exponential schedule
        return min(self.max_wait, self.base * (2 ** attempt))


def api_error_message(response) -> str:
    """The API's own error message (OpenAI and Gemini both answer {"error": {"message": ...}})."""
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    except ValueError:
        pass
    return response.text[:300]


def post_with_retries(session, url: str, *, policy: RetryPolicy, what: str, sleep=None, **kwargs):
    """POST with retries on RETRY_STATUSES and connection errors; GeneratorError on anything else.

    The request body must be re-sendable (bytes, not open files), as every attempt sends it again.
    """
    import time

    import requests

    sleep = sleep or time.sleep
    for attempt in range(policy.max_retries + 1):
        try:
            response = session.post(url, timeout=policy.timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            if attempt == policy.max_retries:
                raise GeneratorError(f"{what}: {url} unreachable after {attempt + 1} attempts ({exc})") from None
            delay = policy.wait(attempt, None)
            log.warning("%s: %s; retrying in %.1f s", what, type(exc).__name__, delay)
            sleep(delay)
            continue
        if response.status_code < 400:
            return response
        if response.status_code in RETRY_STATUSES and attempt < policy.max_retries:
            delay = policy.wait(attempt, response.headers.get("Retry-After"))
            log.warning("%s: HTTP %d (%s); retrying in %.1f s", what, response.status_code, api_error_message(response), delay)
            sleep(delay)
            continue
        return response  # the caller decides between a refused input and a fatal error
    raise AssertionError("unreachable")  # pragma: no cover


class HTTPImageEditor:
    """What the HTTP editing adapters share: API key and base URL (argument, else environment),
    model, retry policy and HTTP session. Subclasses set the class attributes below and define
    `__call__(png, prompt, name) -> (image bytes, extension)`, the API's own request and reply."""

    label = ""  # the API's name in messages
    key_envs: tuple[str, ...] = ()  # environment variables holding the key, first set wins
    base_url_env = ""
    default_base_url = ""
    default_model = ""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        policy: RetryPolicy = RetryPolicy(),
        session=None,
    ):
        import requests

        self.api_key = api_key or next((os.environ[k] for k in self.key_envs if os.environ.get(k)), None)
        if not self.api_key:
            raise GeneratorError(f"no {self.label} API key: set {' or '.join(self.key_envs)} (or pass api_key)")
        self.base_url = (base_url or os.environ.get(self.base_url_env) or self.default_base_url).rstrip("/")
        self.model = model or self.default_model
        self.policy = policy
        self.session = session or requests.Session()


def generator_meta_from_args(args, generator: dict[str, str], task_record: dict, notes: str) -> dict:
    """submission.yaml for an adapter run, from the CLI's --team/--method/--contact/--licence."""
    return submission_meta(
        team=args.team,
        method=args.method or generator["name"].replace("/", "-"),
        track="generated",
        generator=generator,
        task=task_record,
        contact=args.contact,
        licence=args.licence,
        fine_tuned={"used": False, "data": None},
        notes=notes,
    )


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """With `overwrite`, remove the submission folder at `out_dir` (never a folder of another kind)."""
    if overwrite and out_dir.exists():
        import shutil

        check_replaceable(out_dir, SUBMISSION_FILE, "a submission folder")
        shutil.rmtree(out_dir)
