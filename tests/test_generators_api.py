"""The OpenAI and Gemini adapters (on the providers' SDKs) against real HTTP servers on loopback
that speak each API's request and response shapes (auth header, multipart / JSON fields, base64
images), answer 429 or 500 first to exercise the back-off, and can refuse or fail on demand to
exercise skipping and resuming; an unreachable host fails at once."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from benchmark.cli import main
from benchmark.generators.common import (
    GenerationRefused,
    GeneratorError,
    RetryPolicy,
    exported_generation_inputs,
    generate_with_editor,
    progress_store,
    task_generation_inputs,
)
from benchmark.generators.gemini_edit import GeminiImageEditor, generate_gemini
from benchmark.generators.openai_edit import OpenAIImageEditor, generate_openai
from benchmark.submissions import load_submission, validate_submission
from benchmark.tasks import load_task
from benchmark.tasks.demo import build_demo_task

KEY = "test-key-123"
FAST = RetryPolicy(max_retries=3, base=0.01, max_wait=0.05, timeout=10)


def edited_png(data: bytes, serial: int) -> bytes:
    """The fake model's edit: the colour-inverted input (so outputs are traceable to inputs), with
    the top-left pixel encoding a serial number (so each sample differs, as a real model's do)."""
    image = ImageOps.invert(Image.open(io.BytesIO(data)).convert("RGB"))
    image.putpixel((0, 0), (serial % 256, serial // 256 % 256, 7))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class FakeAPI:
    """State shared by the handler: request log, one 429 first, and switches for failures."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.rate_limited = 0
        self.send_429_first = True
        self.fail_first_with: int | None = None  # answer this status (e.g. 500) once, before the 429 rule
        self.fail_after: int | None = None  # answer 401 once this many edits were served
        self.refuse_prompts_with: str | None = None  # Gemini: block prompts for this image
        self.served = 0
        self.hits = 0  # every POST, answered or refused

    def gate(self) -> tuple[int, dict] | None:
        """A 429 the first time, or a 401 once `fail_after` edits were served."""
        with self.lock:
            if self.fail_first_with is not None:
                status, self.fail_first_with = self.fail_first_with, None
                return status, {"error": {"code": status, "message": "The server had an error", "status": "INTERNAL"}}
            if self.send_429_first:
                self.send_429_first = False
                self.rate_limited += 1
                return 429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}}
            if self.fail_after is not None and self.served >= self.fail_after:
                return 401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
        return None


def make_handler(api: FakeAPI):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _reply(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            api.hits += 1
            if self.path == "/v1/images/edits":
                self._openai(body)
            elif self.path.startswith("/v1beta/models/") and self.path.endswith(":generateContent"):
                self._gemini(body)
            else:
                self._reply(404, {"error": {"message": f"no route {self.path}"}})

        def _openai(self, body: bytes) -> None:
            if self.headers.get("Authorization") != f"Bearer {KEY}":
                return self._reply(401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}})
            content_type = self.headers["Content-Type"]
            assert content_type.startswith("multipart/form-data; boundary=")
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body
            )
            fields, files = {}, {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if part.get_filename():
                    files[name] = (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
                else:
                    fields[name] = part.get_payload(decode=True).decode()
            api.requests.append({"api": "openai", "fields": fields, "files": sorted(files)})
            missing = {"model", "prompt", "n", "size", "quality"} - set(fields)
            if missing or "image" not in files or files["image"][1] != "image/png":
                return self._reply(400, {"error": {"message": f"bad request: missing {sorted(missing)} or image"}})
            gate = api.gate()
            if gate:
                return self._reply(*gate, headers={"Retry-After": "0"} if gate[0] == 429 else None)
            with api.lock:
                api.served += 1
                serial = api.served
            image = base64.b64encode(edited_png(files["image"][2], serial)).decode()
            self._reply(200, {"created": 1700000000, "data": [{"b64_json": image}], "usage": {"total_tokens": 1}})

        def _gemini(self, body: bytes) -> None:
            if self.headers.get("x-goog-api-key") != KEY:
                return self._reply(403, {"error": {"code": 403, "message": "API key not valid", "status": "PERMISSION_DENIED"}})
            request = json.loads(body)
            parts = request["contents"][0]["parts"]
            text = next(p["text"] for p in parts if "text" in p)
            # REST clients may send either JSON casing
            blob = next(p.get("inline_data") or p.get("inlineData") for p in parts if {"inline_data", "inlineData"} & set(p))
            config = request.get("generationConfig") or request.get("generation_config")
            modalities = config.get("responseModalities") or config.get("response_modalities")
            api.requests.append({"api": "gemini", "path": self.path, "text": text,
                                 "mime": blob.get("mime_type") or blob.get("mimeType"), "modalities": modalities})
            if "IMAGE" not in modalities:
                return self._reply(400, {"error": {"message": "responseModalities must include IMAGE"}})
            gate = api.gate()
            if gate:
                return self._reply(*gate)
            if api.refuse_prompts_with and api.refuse_prompts_with in text:
                return self._reply(200, {"promptFeedback": {"blockReason": "SAFETY"}})
            with api.lock:
                api.served += 1
                serial = api.served
            sent = base64.b64decode(blob["data"].replace("-", "+").replace("_", "/"))  # either base64 alphabet
            image = base64.b64encode(edited_png(sent, serial)).decode()
            self._reply(200, {"candidates": [{"content": {"role": "model", "parts": [
                {"text": "Here is the edited image."},
                {"inlineData": {"mimeType": "image/png", "data": image}},
            ]}, "finishReason": "STOP"}]})

    return Handler


@pytest.fixture
def fake_api():
    api = FakeAPI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(api))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield api
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    # 25 generation inputs per class x multiplier 4 = the 100 images per class validation needs.
    return load_task(build_demo_task(tmp_path_factory.mktemp("task") / "demo", train_per_class=25, test_per_class=2, image_size=32))


def _meta(task, team="tester", method="fake-model"):
    from benchmark.generators.common import submission_meta

    return submission_meta(team=team, method=method, track="generated",
                           generator={"name": "fake", "version": "1", "link": "http://127.0.0.1"},
                           task={"name": task.name, "revision": task.revision}, contact="t@example.org", licence="CC0-1.0")


def _assert_outputs_are_edits_of_inputs(folder: Path, task) -> None:
    inputs = {item.image_id: item for item in task_generation_inputs(task)}
    sub = load_submission(folder)
    for entry in sub.entries[:20]:
        expected = np.asarray(ImageOps.invert(inputs[entry.source_id].image())).copy()
        got = np.asarray(Image.open(entry.path).convert("RGB")).copy()
        got[0, 0] = expected[0, 0] = 0  # the serial-number pixel
        assert np.array_equal(got, expected)
        assert entry.label == {inputs[entry.source_id].class_name: 1.0}
        assert entry.prompt == inputs[entry.source_id].prompt


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Progress stores go to this test's folder, never to the user's cache."""
    monkeypatch.setenv("SYNTHBENCH_CACHE", str(tmp_path / "cache"))


def test_openai_adapter_retries_and_writes_a_valid_submission(fake_api, task, tmp_path):
    editor = OpenAIImageEditor(api_key=KEY, base_url=f"{fake_api.url}/v1", policy=FAST)
    out = tmp_path / "tester__fake-model"
    counts = generate_openai(task_generation_inputs(task), out, _meta(task), multiplier=4, editor=editor, progress=False)

    assert counts["complete"] and (counts["total"], counts["written"], counts["refused"]) == (600, 600, 0)
    assert fake_api.rate_limited == 1 and len(fake_api.requests) == 601  # the 429'd request was retried
    first = fake_api.requests[0]
    assert first["fields"]["model"] == "gpt-image-1" and first["fields"]["n"] == "1" and first["files"] == ["image"]
    assert first["fields"]["prompt"] == task_generation_inputs(task)[0].prompt
    _assert_outputs_are_edits_of_inputs(out, task)
    report = validate_submission(out, task, check_leakage=False)
    assert report.problems == [] and report.counts == dict.fromkeys(task.classes, 100)
    assert not Path(counts["store"]).exists()  # the progress store was moved into place


@pytest.mark.parametrize("first_status", [429, 500, 503])
def test_openai_transient_failure_then_success(fake_api, task, tmp_path, first_status):
    fake_api.send_429_first = False
    fake_api.fail_first_with = first_status
    editor = OpenAIImageEditor(api_key=KEY, base_url=f"{fake_api.url}/v1", policy=FAST)
    counts = generate_openai(task_generation_inputs(task)[:2], tmp_path / "t__m", _meta(task, "t", "m"), multiplier=1,
                             editor=editor, progress=False)
    assert counts["written"] == 2 and counts["complete"]
    assert len(fake_api.requests) == 3  # one failed request, retried once


def test_openai_adapter_resumes_after_an_interruption(fake_api, task, tmp_path):
    editor = OpenAIImageEditor(api_key=KEY, base_url=f"{fake_api.url}/v1", policy=FAST)
    out = tmp_path / "tester__fake-model"
    inputs = task_generation_inputs(task)[:30]
    fake_api.fail_after = 17  # the key "expires" mid-run: a fatal error, not a skip
    with pytest.raises(GeneratorError, match="HTTP 401: Incorrect API key provided"):
        generate_openai(inputs, out, _meta(task), multiplier=2, editor=editor, progress=False)
    assert not out.exists()  # nothing half-made in submissions/
    store = progress_store(out, _meta(task))
    assert store.is_dir() and len((store / "metadata.jsonl").read_text().splitlines()) == 17  # the paid work is kept

    fake_api.fail_after = None
    served_before = fake_api.served
    counts = generate_openai(inputs, out, _meta(task), multiplier=2, editor=editor, progress=False)
    assert (counts["total"], counts["already_done"], counts["written"], counts["refused"]) == (60, 17, 43, 0)
    assert fake_api.served - served_before == 43  # nothing already written was requested again
    names = [e.file_name for e in load_submission(out).entries]
    assert len(names) == len(set(names)) == 60
    assert not store.exists()


def test_openai_wrong_key_is_a_clear_error(fake_api, task, tmp_path):
    fake_api.send_429_first = False
    editor = OpenAIImageEditor(api_key="wrong", base_url=f"{fake_api.url}/v1", policy=FAST)
    with pytest.raises(GeneratorError, match=r"HTTP 401: Incorrect API key provided"):
        generate_openai(task_generation_inputs(task)[:1], tmp_path / "x__y", _meta(task), editor=editor, progress=False)
    assert fake_api.hits == 1 and not (tmp_path / "x__y").exists()  # 401 is not retried


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("base_url", [f"http://127.0.0.1:{_closed_port()}/v1", "http://synthbench-no-such-host.invalid/v1"])
@pytest.mark.parametrize("editor_class", [OpenAIImageEditor, GeminiImageEditor])
def test_unreachable_host_fails_at_once_and_leaves_nothing(task, tmp_path, base_url, editor_class):
    """Connection refused and DNS failures are not retried (a slow policy would take minutes if they were)."""
    import time

    slow = RetryPolicy(max_retries=5, base=30.0, max_wait=60.0, timeout=5)
    editor = editor_class(api_key=KEY, base_url=base_url, policy=slow)
    out = tmp_path / "x__y"
    started = time.monotonic()
    with pytest.raises(GeneratorError, match=r"cannot reach .*\(not retried\)"):
        generate_with_editor(editor, task_generation_inputs(task)[:1], out, _meta(task, "x", "y"), progress=False)
    assert time.monotonic() - started < 20
    assert not out.exists()


def test_gemini_adapter_skips_refusals_then_retries_them(fake_api, task, tmp_path):
    editor = GeminiImageEditor(api_key=KEY, base_url=fake_api.url, policy=FAST)
    out = tmp_path / "tester__fake-model"
    inputs = task_generation_inputs(task)
    fake_api.refuse_prompts_with = "BLOCKME"
    # The server blocks prompts containing BLOCKME: give one input such a prompt.
    item = inputs[5]
    flagged = type(item)(item.image_id, item.class_name, item.prompt + " BLOCKME", item.png, item.pair_id)
    counts = generate_gemini(inputs[:5] + [flagged] + inputs[6:], out, _meta(task), multiplier=4, editor=editor,
                             progress=False)
    assert counts["refused"] == 4 and counts["written"] == 596 and not counts["complete"]
    assert not out.exists()  # incomplete: kept in the progress store
    assert fake_api.rate_limited == 1
    request = fake_api.requests[-1]
    assert request["path"] == "/v1beta/models/gemini-2.5-flash-image:generateContent"
    assert request["mime"] == "image/png" and "IMAGE" in request["modalities"]

    fake_api.refuse_prompts_with = None  # a rerun retries only the refused outputs
    served_before = fake_api.served
    counts = generate_gemini(inputs, out, _meta(task), multiplier=4, editor=editor, progress=False)
    assert (counts["total"], counts["already_done"], counts["written"], counts["refused"]) == (600, 596, 4, 0)
    assert fake_api.served - served_before == 4
    _assert_outputs_are_edits_of_inputs(out, task)
    assert validate_submission(out, task, check_leakage=False).problems == []


def test_gemini_server_error_then_success(fake_api, task, tmp_path):
    fake_api.send_429_first = False
    fake_api.fail_first_with = 500
    editor = GeminiImageEditor(api_key=KEY, base_url=fake_api.url, policy=FAST)
    counts = generate_gemini(task_generation_inputs(task)[:2], tmp_path / "t__m", _meta(task, "t", "m"), multiplier=1,
                             editor=editor, progress=False)
    assert counts["written"] == 2 and len(fake_api.requests) == 3


def test_gemini_wrong_key_is_a_clear_error(fake_api, task, tmp_path):
    fake_api.send_429_first = False
    editor = GeminiImageEditor(api_key="wrong", base_url=fake_api.url, policy=FAST)
    with pytest.raises(GeneratorError, match=r"HTTP 403: API key not valid"):
        generate_gemini(task_generation_inputs(task)[:1], tmp_path / "x__y", _meta(task), editor=editor, progress=False)
    assert fake_api.hits == 1


def test_generate_with_editor_runs_any_editor_callable(task, tmp_path):
    """The shared loop with no HTTP: templated prompts, refusals skipped, a rerun retries only them."""
    inputs = task_generation_inputs(task)[:6]
    refused_id = inputs[2].image_id
    calls = []

    def editor(png, prompt, name):
        calls.append((name, prompt))
        if name == refused_id and len(calls) <= 12:  # refuse on the first run only
            raise GenerationRefused("policy")
        return edited_png(png, len(calls)), ".png"

    out = tmp_path / "tester__fake-model"
    counts = generate_with_editor(editor, inputs, out, _meta(task), multiplier=2, prompt_template="{class_name}: {prompt}",
                                  progress=False)
    assert (counts["total"], counts["already_done"], counts["written"], counts["refused"]) == (12, 0, 10, 2)
    assert calls[0] == (inputs[0].image_id, f"{inputs[0].class_name}: {inputs[0].prompt}")

    counts = generate_with_editor(editor, inputs, out, _meta(task), multiplier=2, progress=False)
    assert (counts["total"], counts["already_done"], counts["written"], counts["refused"]) == (12, 10, 2, 0)
    assert [name for name, _ in calls[12:]] == [refused_id, refused_id]
    assert sorted(e.file_name for e in load_submission(out).entries) == sorted(
        f"images/{item.class_name}/{item.image_id}__{j}.png" for item in inputs for j in range(2)
    )


def test_accept_refused_writes_the_submission_without_them(task, tmp_path):
    inputs = task_generation_inputs(task)[:3]

    def editor(png, prompt, name):
        if name == inputs[0].image_id:
            raise GenerationRefused("policy")
        return edited_png(png, 1), ".png"

    out = tmp_path / "tester__fake-model"
    counts = generate_with_editor(editor, inputs, out, _meta(task), accept_refused=True, progress=False)
    assert counts["complete"] and counts["refused"] == 1
    assert len(load_submission(out).entries) == 2


def test_missing_key_names_the_variable(monkeypatch):
    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(GeneratorError, match="set the environment variable OPENAI_API_KEY$"):
        OpenAIImageEditor()
    with pytest.raises(GeneratorError, match="GEMINI_API_KEY or GOOGLE_API_KEY$"):
        GeminiImageEditor()


def test_cli_help_names_the_key_variables(capsys):
    for name, variable in (("openai", "OPENAI_API_KEY"), ("gemini", "GEMINI_API_KEY")):
        with pytest.raises(SystemExit):
            main(["generate", name, "--help"])
        assert variable in capsys.readouterr().out


def test_cli_exported_inputs_to_validated_submission(fake_api, task, tmp_path, monkeypatch, capsys):
    """The participant's path: export inputs, run the adapter from the CLI, validate."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    inputs_dir = tmp_path / "inputs"
    assert main(["inputs", "export", "--task", str(task.path), "--out", str(inputs_dir)]) == 0
    inputs, record = exported_generation_inputs(inputs_dir)
    assert record == {"name": task.name, "revision": "local", "test_manifest_hash": task.test_manifest_hash}
    assert [i.image_id for i in inputs] == task.image_ids("generation_inputs")

    args = ["generate", "openai", "--inputs", str(inputs_dir), "--base-url", f"{fake_api.url}/v1", "--quality", "low",
            "--contact", "me@example.org", "--licence", "CC-BY-4.0", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "not-an-id")]) == 2  # the folder's name must be TEAM__METHOD
    assert "must be named <team>__<method>" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "a__b"), "--licence", "unknown"]) == 2
    assert "placeholder 'unknown'" in capsys.readouterr().err
    assert fake_api.requests == []  # both refused before any request

    out = tmp_path / "myteam__gpt-image-1"
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "600 image(s) written" in printed and f"--task {task.name}" in printed and "<task>" not in printed
    assert {r["fields"]["quality"] for r in fake_api.requests} == {"low"}
    report = validate_submission(out, task, check_leakage=False)
    assert report.problems == [] and report.submission_id == "myteam__gpt-image-1"
    assert load_submission(out).meta["generator"]["version"] == "gpt-image-1"
