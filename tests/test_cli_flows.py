"""User flows through the `synthbench` console script: the mistakes a first-time user makes
(a mistyped --out with --overwrite, a bad count, a taken port, a closed pipe) give one clear error
and leave their files alone; generated submissions get the id their folder is named after."""

from __future__ import annotations

import socket
import sys
import threading
from http.server import ThreadingHTTPServer

import pytest

from benchmark.cli import main
from benchmark.submissions import load_submission
from benchmark.tasks.demo import build_demo_task

from .test_generators_api import KEY, FakeAPI, make_handler


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """A tiny demo task: 1 train and 1 test image per class, 32 px (about a second to build)."""
    return build_demo_task(tmp_path_factory.mktemp("task") / "demo", train_per_class=1, test_per_class=1, image_size=32)


@pytest.fixture(scope="module")
def inputs_dir(task_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("inputs") / "inputs"
    assert main(["inputs", "export", "--task", str(task_dir), "--out", str(out)]) == 0
    return out


@pytest.fixture
def openai_api(monkeypatch):
    """The loopback OpenAI-compatible server of test_generators_api, without its first 429."""
    api = FakeAPI()
    api.send_429_first = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(api))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _users_folder(tmp_path):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("months of work")
    return folder


@pytest.mark.parametrize(
    "command",
    [
        ["task", "build", "demo", "--train-per-class", "1", "--test-per-class", "1", "--image-size", "32"],
        ["inputs", "export", "--task", "{task}"],
    ],
    ids=["task-build", "inputs-export"],
)
def test_overwrite_never_deletes_a_folder_of_another_kind(command, task_dir, tmp_path, capsys):
    folder = _users_folder(tmp_path)
    argv = [part.format(task=task_dir) for part in command] + ["--out", str(folder), "--overwrite"]
    assert main(argv) == 2
    assert (folder / "chapter1.tex").read_text() == "months of work"
    err = capsys.readouterr().err
    assert str(folder) in err and "refusing to replace it" in err


def test_generate_overwrite_replaces_a_submission_but_not_a_users_folder(task_dir, tmp_path, capsys):
    folder = _users_folder(tmp_path).rename(tmp_path / "me__thesis")  # named like a submission, but is not one
    base = ["generate", "classic", "--task", str(task_dir), "--no-progress"]
    assert main(base + ["--out", str(folder), "--multiplier", "1", "--overwrite"]) == 2
    assert (folder / "chapter1.tex").read_text() == "months of work"
    assert "is not a submission folder" in capsys.readouterr().err

    out = tmp_path / "baseline__classic"  # what the command wrote itself is replaced
    assert main(base + ["--out", str(out), "--multiplier", "1"]) == 0
    assert main(base + ["--out", str(out), "--multiplier", "2", "--overwrite"]) == 0
    assert len(load_submission(out).entries) == 12  # 6 real images x 2


def test_overwrite_refuses_a_file(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    argv = ["task", "build", "demo", "--out", str(target), "--overwrite", "--train-per-class", "1", "--test-per-class", "1"]
    assert main(argv) == 2
    assert target.read_text() == "keep me"


def test_count_flags_reject_words_with_a_plain_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["task", "build", "demo", "--out", str(tmp_path / "t"), "--train-per-class", "abc"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--train-per-class: expected a positive integer, got 'abc'" in err and "_positive" not in err


def test_zero_multiplier_is_refused_before_anything_is_written(inputs_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "team__method"
    with pytest.raises(SystemExit):
        main(["generate", "openai", "--inputs", str(inputs_dir), "--out", str(out), "--multiplier", "0",
              "--base-url", "http://127.0.0.1:9/v1", "--no-progress", "--contact", "a@b.org", "--licence", "CC0-1.0"])
    assert "--multiplier: must be at least 1, got 0" in capsys.readouterr().err
    assert not out.exists()


def test_api_adapter_names_the_submission_after_its_folder(inputs_dir, openai_api, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SYNTHBENCH_CACHE", str(tmp_path / "cache"))

    def generate(out):
        return main(["generate", "openai", "--inputs", str(inputs_dir), "--out", str(out), "--multiplier", "1",
                     "--base-url", openai_api, "--no-progress", "--contact", "acme@example.org", "--licence", "CC0-1.0"])

    assert generate(tmp_path / "acme__flood-v2") == 0
    submission = load_submission(tmp_path / "acme__flood-v2")
    assert (submission.id, submission.meta["team"], submission.meta["method"]) == ("acme__flood-v2", "acme", "flood-v2")
    assert len(submission.entries) == 6
    # a folder not named TEAM__METHOD is refused before any request (its name would be the id)
    assert generate(tmp_path / "outputs") == 2
    assert "must be named <team>__<method>" in capsys.readouterr().err and not (tmp_path / "outputs").exists()


def test_serve_on_a_taken_port_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "index.html").write_text("<html></html>")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["leaderboard", "serve", "--site", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot serve {tmp_path} at 127.0.0.1:{port}" in err


def test_serve_refuses_a_port_out_of_range(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["leaderboard", "serve", "--site", str(tmp_path), "--port", "99999"])
    assert exc.value.code == 2
    assert "a port is 0 to 65535, got 99999" in capsys.readouterr().err


class _ClosedPipe:
    """stdout of `synthbench ... | head` once head has exited."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_ends_the_command_quietly(task_dir, monkeypatch):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["task", "info", str(task_dir), "--json"]) == 141


def test_run_all_summary_counts_add_up():
    """planned = already complete + run + still running + refused; started = succeeded + failed;
    unreadable folders and encode-job failures are named apart, not counted as units."""
    from benchmark.executors import Failure, RunReport

    report = RunReport("local", planned=4, already_complete=["a"], submitted=["b", "c"], succeeded=["b"],
                       refused=["d"], unreadable=1,
                       failures=[Failure("c", "boom"), Failure("d", "submission failed validation: x"),
                                 Failure("e (every unit)", "submission cannot be read: y")])
    first = report.summary().splitlines()[0]
    assert first == ("4 unit(s): 1 already complete, 2 run, 0 still running from an earlier call, 1 refused by "
                     "validation; of the 2 started: 1 succeeded, 1 failed; 1 submission folder(s) could not be read "
                     "(no unit planned)")
    numbers = [int(word) for word in first.replace(",", " ").replace(";", " ").split() if word.isdigit()]
    planned, complete, run, running, refused, started, succeeded, failed = numbers[:8]
    assert planned == complete + run + running + refused and started == run + running == succeeded + failed
