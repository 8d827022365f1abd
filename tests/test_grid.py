"""The grid on a tiny procedural task: draws, skips, determinism, resume, the cache and refusal."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from benchmark import grid
from benchmark.cli import main
from benchmark.errors import HarnessError, SubmissionError
from benchmark.grid import finalise, run_grid, skip_reason, synthetic_draw
from benchmark.images import encode_png
from benchmark.protocol import SETTINGS, default_settings
from benchmark.protocols import LinearProbeRunner
from benchmark.results import load_result, write_result

REAL_PER_CLASS = 12  # the learning curve's real@10 fits, real@25 and real@50 do not
SYNTHETIC_PER_INPUT = 3  # 36 synthetic images per class: ratios 1..3 of 12 real, not 4
#: Settings this task cannot fill: too few synthetic images for 1:4, too few real for real@25/50.
UNFILLABLE = ("real@25", "real@50", "synthetic@4", "mixed@4")
SEEDS = (0, 1)
IMAGE_SIZE = 32  # backbone input size: the real offline EfficientNet-Lite0 weights, fast on CPU
#: A smaller C grid and fewer folds keep these tests quick; the grid logic does not depend on them.
RECIPE = {"C_grid": [0.1, 10.0], "cv_folds": 3}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    from benchmark.tasks import build_demo_task, load_task

    root = tmp_path_factory.mktemp("task") / "demo"
    build_demo_task(root, train_per_class=REAL_PER_CLASS, test_per_class=8, image_size=32)
    return load_task(root)


def make_submission(folder: Path, task, *, method: str, per_input: int, seed: int) -> Path:
    """A submission made like a participant's: the demo editor applied to the generation inputs."""
    from benchmark.tasks import edit_image

    sub_id = f"tests__{method}"
    root = folder / sub_id
    (root / "images").mkdir(parents=True)
    rows = []
    inputs = task.splits["generation_inputs"]
    for i, row in enumerate(inputs):
        name = task.classes[row["label"]]
        for j in range(per_input):
            image = edit_image(row["image"].convert("RGB"), name, seed=seed + 100 * i + j)
            file_name = f"images/{name}_{i:03d}_{j}.png"
            (root / file_name).write_bytes(encode_png(image))
            rows.append({"file_name": file_name, "label": name, "source_id": row["image_id"], "prompt": row["prompt"]})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    meta = {
        "id": sub_id, "team": "tests", "method": method, "contact": "tests@example.org", "licence": "CC-BY-4.0",
        "track": "generated", "kind": "images", "generator": {"name": "demo-editor", "version": "1", "link": "https://example.org/demo-editor"},
        "fine_tuned": {"used": False}, "task": {"name": task.name, "revision": task.revision},
    }
    (root / "submission.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def submission(task, tmp_path_factory):
    return make_submission(tmp_path_factory.mktemp("subs"), task, method="edit", per_input=SYNTHETIC_PER_INPUT, seed=0)


@pytest.fixture(scope="module")
def first(task, submission, tmp_path_factory):
    """One full grid (two seeds), with the training sets each run received."""
    cache = tmp_path_factory.mktemp("cache")
    seen: dict[tuple[str, int], tuple[list[str], np.ndarray]] = {}
    original = LinearProbeRunner.fit_predict

    def spy(self, train, test, *, seed, context):
        key = next(k for k in pending if k not in seen)
        seen[key] = ([r.sha256 for r in train.refs], train.is_synthetic.copy(), train.groups.copy())
        return original(self, train, test, seed=seed, context=context)

    order = [s for s in SETTINGS if s not in UNFILLABLE and SETTINGS[s].kind != "more-real"]  # no extra split
    pending = [(s, seed) for s in order for seed in SEEDS]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LinearProbeRunner, "fit_predict", spy)
        patch.setattr(grid, "MAX_FIT_WORKERS", 1)  # the spy reads the runs in plan order: one fit at a time
        record = run_grid(task, submission, seeds=SEEDS, cache_dir=cache, validated=True,
                          image_size=IMAGE_SIZE, progress=False, protocol_overrides=RECIPE)
    return {"record": record, "cache": cache, "train_sets": seen, "path": submission / "results" /
            "efficientnet-lite0__linear-probe.json"}


def _without_timing(runs):
    return [{k: v for k, v in run.items() if k != "seconds"} for run in runs]


def test_record_covers_every_fillable_setting_and_reports_the_rest(first, task):
    record = first["record"]
    assert load_result(first["path"]) == record  # written atomically, valid
    ran = {(r["setting"], r["seed"]) for r in record["runs"]}
    fillable = [s for s in SETTINGS if s not in UNFILLABLE and SETTINGS[s].kind != "more-real"]
    assert ran == {(s, seed) for s in fillable for seed in SEEDS}
    assert [s["setting"] for s in record["skipped"]] == list(UNFILLABLE)
    skipped = {s["setting"]: s["reason"] for s in record["skipped"]}
    assert skipped["synthetic@4"].startswith("needs 48 synthetic images per class, has 36 for 'earthquake'")
    assert skipped["real@25"].startswith("needs more than 25 train_real images per class")
    assert "12 for 'earthquake'" in skipped["real@50"]
    for run in record["runs"]:
        setting = SETTINGS[run["setting"]]
        synthetic = setting.ratio * REAL_PER_CLASS if setting.kind != "real" else 0
        real = (setting.real_per_class or REAL_PER_CLASS) if setting.uses_real else 0
        assert run["n_train"] == 6 * (real + synthetic)
        assert (run["n_real_per_class"], run["n_synthetic_per_class"]) == (real, synthetic)
        assert all(c == {"real": real, "synthetic": synthetic} for c in run["train_counts"].values())
        assert (run["delta_vs_real"] is None) == (setting.kind == "real")
        assert run["params"]["C"] in record["protocol"]["params"]["C_grid"]
    assert record["summary"]["mixed@2"]["n_seeds"] == len(SEEDS)
    provenance = record["provenance"]
    # every image needed was encoded once: test + train_real + all 36 synthetic per class (ratio 3)
    # + the generation inputs (the diagnostics' memorisation and edit-strength neighbours)
    assert provenance["images_encoded"] == 6 * (8 + REAL_PER_CLASS + 3 * REAL_PER_CLASS + REAL_PER_CLASS)
    diagnostics = record["diagnostics"]
    assert list(diagnostics["per_class"]) == list(task.classes)
    assert diagnostics["overall"]["n_synthetic"] == 6 * 3 * REAL_PER_CLASS
    assert diagnostics["overall"]["n_real"] == 6 * REAL_PER_CLASS
    assert diagnostics["overall"]["edit_strength_n"] == 6 * 3 * REAL_PER_CLASS  # every image names its input
    assert provenance["runs_computed"] == len(ran) and provenance["runs_reused"] == 0
    assert provenance["finished"] is not None and provenance["seconds_encoding"] > 0
    assert record["task"]["test_manifest_hash"] == task.test_manifest_hash


def test_synthetic_subsets_are_nested_shared_and_drawn_per_seed(first):
    seen = first["train_sets"]

    def synthetic(setting, seed):
        refs, flags, _ = seen[(setting, seed)]
        return {r for r, f in zip(refs, flags) if f}, [r for r, f in zip(refs, flags) if not f]

    real_refs = synthetic("real", 0)[1]
    assert len(real_refs) == 6 * REAL_PER_CLASS and not synthetic("real", 0)[0]
    for seed in SEEDS:
        for k in (1, 2, 3):
            only, none_real = synthetic(f"synthetic@{k}", seed)
            mixed, mixed_real = synthetic(f"mixed@{k}", seed)
            assert not none_real and mixed == only and mixed_real == real_refs
            assert len(only) == 6 * k * REAL_PER_CLASS
        assert synthetic("synthetic@1", seed)[0] < synthetic("synthetic@2", seed)[0] < synthetic("synthetic@3", seed)[0]
    assert synthetic("synthetic@1", 0)[0] != synthetic("synthetic@1", 1)[0]


def test_rerun_gives_identical_metrics_and_encodes_nothing(first, task, submission, tmp_path):
    again = run_grid(task, submission, seeds=SEEDS, cache_dir=first["cache"], validated=True, image_size=IMAGE_SIZE,
                     out_path=tmp_path / "again.json", progress=False, protocol_overrides=RECIPE)
    assert again["provenance"]["images_encoded"] == 0
    assert _without_timing(again["runs"]) == _without_timing(first["record"]["runs"])
    assert again["summary"] == first["record"]["summary"]


def test_resume_computes_only_the_missing_runs(first, task, submission, tmp_path):
    path = tmp_path / "partial.json"
    partial = json.loads(json.dumps(first["record"]))
    dropped = {("real", 1), ("synthetic@1", 0), ("mixed@2", 1)}
    partial["runs"] = [r for r in partial["runs"] if (r["setting"], r["seed"]) not in dropped]
    write_result(path, finalise(partial))
    resumed = run_grid(task, submission, seeds=SEEDS, cache_dir=first["cache"], validated=True,
                       image_size=IMAGE_SIZE, out_path=path, progress=False, protocol_overrides=RECIPE)
    assert resumed["provenance"]["runs_computed"] == len(dropped)
    assert resumed["provenance"]["runs_reused"] == len(first["record"]["runs"]) - len(dropped)
    assert _without_timing(resumed["runs"]) == _without_timing(first["record"]["runs"])
    assert load_result(path) == resumed
    done = run_grid(task, submission, seeds=SEEDS, cache_dir=first["cache"], validated=True,
                    image_size=IMAGE_SIZE, out_path=path, progress=False, protocol_overrides=RECIPE)
    assert done["provenance"]["runs_computed"] == 0 and done["provenance"]["images_encoded"] == 0
    # a changed recipe is another experiment: nothing is reused
    other = run_grid(task, submission, seeds=(0,), settings=["real"], cache_dir=first["cache"], validated=True,
                     image_size=IMAGE_SIZE, out_path=path, progress=False,
                     protocol_overrides={"C_grid": [0.1, 1.0], "cv_folds": 3})
    assert other["provenance"]["runs_reused"] == 0
    assert [(r["setting"], r["seed"]) for r in other["runs"]] == [("real", 0)]
    # an official record is never replaced by a local run
    official = tmp_path / "official.json"
    write_result(official, dict(first["record"], official=True))
    before = official.read_bytes()
    with pytest.raises(HarnessError, match="official record"):
        run_grid(task, submission, seeds=SEEDS, cache_dir=first["cache"], validated=True, image_size=IMAGE_SIZE,
                 out_path=official, progress=False, protocol_overrides=RECIPE)
    assert official.read_bytes() == before


def test_cv_groups_put_each_real_image_with_what_was_made_from_its_scene(first, task):
    """A real image and the submission's edits of its pre-disaster twin share one CV group."""
    from benchmark.grid import scene_of

    scenes = scene_of(task)
    real_scenes = [scenes[i] for i in task.image_ids("train_real")]
    assert len(set(real_scenes)) == len(real_scenes)  # one scene per real image
    inputs = task.image_ids("generation_inputs")
    assert sorted(scenes[i] for i in inputs) == sorted(real_scenes)  # each input is one real image's twin
    _, synthetic, groups = first["train_sets"][("mixed@2", 0)]
    assert list(groups[~synthetic]) == real_scenes
    made = groups[synthetic]
    assert made.size == 2 * len(real_scenes) and set(made) <= set(real_scenes)
    _, synthetic, groups = first["train_sets"][("real", 1)]
    assert not synthetic.any() and list(groups) == real_scenes


def test_seeds_trained_together_give_the_same_runs(first, task, submission, tmp_path):
    """What a GPU does by default (all seeds of a setting in one batch), forced on the CPU."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LinearProbeRunner, "seeds_together", True)
        calls = []
        original = LinearProbeRunner.fit_predict_many
        patch.setattr(LinearProbeRunner, "fit_predict_many",
                      lambda self, trains, test, **kw: calls.append(len(trains)) or original(self, trains, test, **kw))
        together = run_grid(task, submission, seeds=SEEDS, cache_dir=first["cache"], validated=True, image_size=IMAGE_SIZE,
                            progress=False, protocol_overrides=RECIPE, out_path=tmp_path / "together.json")
    assert calls and set(calls) == {len(SEEDS)}  # one batch per setting, every seed in it
    alone = {(r["setting"], r["seed"]): r for r in first["record"]["runs"]}
    assert {(r["setting"], r["seed"]) for r in together["runs"]} == set(alone)
    for run in together["runs"]:
        reference = alone[(run["setting"], run["seed"])]
        assert run["n_train"] == reference["n_train"] and run["train_counts"] == reference["train_counts"]
        agree = np.mean(np.array(run["predictions"]) == np.array(reference["predictions"]))
        assert agree >= 0.95, (run["setting"], run["seed"], agree)


def test_runs_fitted_side_by_side_give_the_same_record(first, task, submission, tmp_path, monkeypatch):
    """On a CPU with several cores the linear probe's runs are fitted in threads, each on one
    intra-op thread: the record is the one fitted run by run, in plan order."""
    threads = []
    original = LinearProbeRunner.fit_predict

    def spy(self, train, test, *, seed, context):
        threads.append((threading.current_thread().name, torch.get_num_threads()))
        return original(self, train, test, seed=seed, context=context)

    monkeypatch.setattr(grid, "fit_workers", lambda inputs: 2)
    monkeypatch.setattr(LinearProbeRunner, "fit_predict", spy)
    before = torch.get_num_threads()
    parallel = run_grid(task, submission, seeds=SEEDS, cache_dir=first["cache"], validated=True, image_size=IMAGE_SIZE,
                        progress=False, protocol_overrides=RECIPE, out_path=tmp_path / "parallel.json")
    assert parallel["provenance"]["runs_computed"] == len(first["record"]["runs"])
    assert _without_timing(parallel["runs"]) == _without_timing(first["record"]["runs"])
    assert parallel["summary"] == first["record"]["summary"]
    assert len({name for name, _ in threads}) == 2 and all(name.startswith("fit") for name, _ in threads)
    assert {n for _, n in threads} == {1} and torch.get_num_threads() == before


def test_a_second_submission_encodes_only_its_own_images(first, task, tmp_path):
    second = make_submission(tmp_path, task, method="other", per_input=2, seed=7)
    record = run_grid(task, second, seeds=(0,), settings=["real", "mixed@1"], cache_dir=first["cache"],
                      validated=True, image_size=IMAGE_SIZE, progress=False, protocol_overrides=RECIPE)
    # test, train_real and the generation inputs come from the cache; only the submission's own
    # images are new (all of them: the diagnostics read the whole set, not only the drawn ones)
    assert record["provenance"]["images_encoded"] == 6 * 2 * REAL_PER_CLASS
    assert [s["setting"] for s in record["skipped"]] == []  # only the settings asked for are planned
    assert {r["setting"] for r in record["runs"]} == {"real", "mixed@1"}


def test_an_invalid_submission_is_refused_before_any_compute(task, tmp_path):
    broken = make_submission(tmp_path / "subs", task, method="broken", per_input=1, seed=3)
    victim = next((broken / "images").iterdir())
    victim.write_bytes(victim.read_bytes()[:40])  # a truncated PNG
    cache = tmp_path / "cache"
    with pytest.raises(SubmissionError, match=victim.name):
        run_grid(task, broken, seeds=(0,), cache_dir=cache, image_size=IMAGE_SIZE, check_leakage=False,
                 progress=False, protocol_overrides=RECIPE)
    assert not cache.exists()
    assert not (broken / "results").exists()


def test_draws_and_skip_messages():
    by_class = [np.arange(0, 10), np.arange(10, 30)]
    a = synthetic_draw(by_class, seed=5, per_class=[4, 4])
    assert np.array_equal(a, synthetic_draw(by_class, seed=5, per_class=[4, 4]))
    assert not np.array_equal(a, synthetic_draw(by_class, seed=6, per_class=[4, 4]))
    bigger = synthetic_draw(by_class, seed=5, per_class=[8, 8])
    assert set(a) < set(bigger) and set(a[:4]) <= set(range(10)) and set(a[4:]) <= set(range(10, 30))
    names = ["a", "b", "c"]
    uniform = np.array([100, 100, 100])
    assert skip_reason(SETTINGS["mixed@2"], uniform, np.array([250, 150, 120]), names) == (
        "needs 200 synthetic images per class, has 150 for 'b', 120 for 'c'"
    )
    # a class with fewer real images needs proportionally fewer synthetic ones (ratio 1:k per class)
    short_class = np.array([100, 100, 80])
    assert skip_reason(SETTINGS["mixed@2"], short_class, np.array([250, 150, 170]), names) == (
        "needs 200 synthetic images for 'b' (has 150)"
    )
    assert skip_reason(SETTINGS["synthetic@1"], uniform, np.array([100, 100, 100]), names) is None
    assert skip_reason(SETTINGS["real"], uniform, np.zeros(3, int), names) is None


def test_cli_refuses_unknown_names_listing_valid_ones(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--task", "x", "--submission", "y", "--backbone", "resnet-9000"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "resnet-9000" in err and "efficientnet-lite0" in err and "clip-vit-b16" in err
    with pytest.raises(SystemExit):
        main(["run", "--task", "x", "--submission", "y", "--settings", "mixed@7"])
    assert "real, real@10, real@25, real@50, synthetic@1" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_scores_a_valid_submission_and_prints_the_summary(task, tmp_path, capsys):
    # 100 images per class: the minimum validation accepts (its leakage gate encodes at 224 px: slow)
    sub = make_submission(tmp_path, task, method="cli", per_input=13, seed=11)
    out = tmp_path / "out.json"
    code = main(["run", "--task", str(task.path), "--submission", str(sub), "--seed-list", "0",
                 "--settings", "real,mixed@1", "--cache-dir", str(tmp_path / "cache"), "--device", "cpu",
                 "--image-size", str(IMAGE_SIZE), "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "macro-F1 95% CI" in printed and "mixed@1" in printed and f"wrote {out}" in printed
    record = load_result(out)
    assert {r["setting"] for r in record["runs"]} == {"real", "mixed@1"}


# -- the other protocols, through the same grid (tiny randomly initialised backbones) -------------


def test_zero_shot_is_one_run_of_its_own_setting(task, submission, tmp_path):
    from benchmark.backbones import TINY_CONFIGS

    kwargs = dict(protocol="zero-shot", backbone="clip-vit-b32", random_init_config=TINY_CONFIGS["clip-vit-b32"],
                  image_size=IMAGE_SIZE, cache_dir=tmp_path / "cache", validated=True, progress=False)
    record = run_grid(task, submission, **kwargs)
    assert [(r["setting"], r["seed"], r["n_train"]) for r in record["runs"]] == [("zero-shot", 0, 0)]
    assert record["runs"][0]["delta_vs_real"] is None and not record["skipped"]
    assert record["protocol"]["params"]["templates"]
    assert load_result(submission / "results" / "clip-vit-b32__zero-shot.json") == record
    assert run_grid(task, submission, **kwargs)["provenance"]["runs_computed"] == 0


def test_fine_tune_runs_per_setting_and_seed(task, submission, tmp_path):
    from benchmark.backbones import TINY_CONFIGS

    record = run_grid(
        task, submission, protocol="fine-tune", settings=["real", "mixed@1"], seeds=(0,),
        random_init_config=TINY_CONFIGS["efficientnet-lite0"], image_size=IMAGE_SIZE, cache_dir=tmp_path / "cache",
        validated=True, progress=False, out_path=tmp_path / "ft.json",
        protocol_overrides={"images_seen": 32, "batch_size": 16},
    )
    assert [(r["setting"], r["n_train"]) for r in record["runs"]] == [("real", 6 * REAL_PER_CLASS), ("mixed@1", 12 * REAL_PER_CLASS)]
    assert record["protocol"]["params"]["images_seen"] == 32
    assert record["runs"][1]["delta_vs_real"] is not None


def test_checkpoint_submissions_are_scored_by_the_checkpoint_protocol(task, tmp_path):
    from torch import nn

    from benchmark.backbones import TINY_CONFIGS, load_backbone
    from benchmark.protocols.checkpoint import save_checkpoint

    backbone = load_backbone("efficientnet-lite0", random_init_config=TINY_CONFIGS["efficientnet-lite0"],
                             image_size=IMAGE_SIZE)
    folder = tmp_path / "tests__model"
    save_checkpoint(folder, backbone, nn.Linear(backbone.feature_dim, len(task.classes)), task.classes)
    meta = {
        "id": "tests__model", "team": "tests", "method": "model", "contact": "tests@example.org",
        "licence": "CC-BY-4.0", "track": "generated", "kind": "checkpoint",
        "generator": {"name": "demo-editor", "version": "1", "link": "https://example.org/demo-editor"}, "fine_tuned": {"used": False},
        "task": {"name": task.name, "revision": task.revision},
    }
    (folder / "submission.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    with pytest.raises(HarnessError, match="scored by the checkpoint protocol"):
        run_grid(task, folder, protocol="linear-probe", validated=True, progress=False)
    record = run_grid(task, folder, cache_dir=tmp_path / "cache", progress=False, check_leakage=False)
    assert [(r["setting"], r["seed"]) for r in record["runs"]] == [("checkpoint", 0)]
    assert record["backbone"]["name"] == "efficientnet-lite0"
    assert record["backbone"]["revision"] == record["runs"][0]["params"]["checkpoint_sha256"]
    assert load_result(folder / "results" / "efficientnet-lite0__checkpoint.json") == record


def test_protocol_registry_matches_the_protocol_recipes():
    from benchmark.protocol import PROTOCOLS
    from benchmark.protocols import RUNNERS, get_runner

    assert list(RUNNERS) == list(PROTOCOLS)
    with pytest.raises(HarnessError) as info:
        get_runner("svm")
    assert all(name in str(info.value) for name in PROTOCOLS)
    with pytest.raises(HarnessError, match="no parameter.*Cgrid"):
        get_runner("linear-probe", {"Cgrid": [1.0]})
    probe = get_runner("linear-probe", {"C_grid": [1.0]})
    assert probe.params()["C_grid"] == [1.0] and "description" not in probe.params()
    assert [get_runner(n).fixed_setting for n in PROTOCOLS] == [None, None, "zero-shot", "checkpoint"]


def test_ctrl_c_keeps_the_finished_runs_and_the_next_call_resumes(task, submission, first, tmp_path):
    out = tmp_path / "interrupted.json"
    original = LinearProbeRunner.fit_predict
    calls = []

    def interrupt_third(self, train, test, *, seed, context):
        calls.append(seed)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, train, test, seed=seed, context=context)

    common = dict(seeds=SEEDS, settings=["real", "mixed@1"], cache_dir=first["cache"], validated=True,
                  image_size=IMAGE_SIZE, progress=False, protocol_overrides=RECIPE, out_path=out)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LinearProbeRunner, "fit_predict", interrupt_third)
        patch.setattr(grid, "MAX_FIT_WORKERS", 1)  # "the third fit" in plan order
        with pytest.raises(KeyboardInterrupt):
            run_grid(task, submission, **common)
    kept = load_result(out)
    assert len(kept["runs"]) == 2 and kept["provenance"]["finished"] is None
    resumed = run_grid(task, submission, **common)
    assert resumed["provenance"]["runs_reused"] == 2 and resumed["provenance"]["runs_computed"] == 2
    assert resumed["provenance"]["finished"] is not None


def test_out_never_overwrites_a_file_that_is_not_a_record(task, submission, first, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(HarnessError, match="not a synthbench result record; refusing to overwrite"):
        run_grid(task, submission, seeds=(0,), settings=["real"], cache_dir=first["cache"], validated=True,
                 image_size=IMAGE_SIZE, progress=False, protocol_overrides=RECIPE, out_path=notes)
    assert notes.read_text() == "my notes\n"
    # a record of ours that no longer validates is recomputed in place
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema_version": 2, "runs": "not a list"}')
    record = run_grid(task, submission, seeds=(0,), settings=["real"], cache_dir=first["cache"], validated=True,
                      image_size=IMAGE_SIZE, progress=False, protocol_overrides=RECIPE, out_path=broken)
    assert load_result(broken)["runs"] == record["runs"] and len(record["runs"]) == 1


# ----------------------------------------------------------------------------------------------
# The grid's stages, one at a time (run_grid calls them in this order)
# ----------------------------------------------------------------------------------------------


def _inputs(task, submission, cache, **kwargs):
    from benchmark.grid import resolve_inputs

    kwargs.setdefault("seeds", SEEDS)
    return resolve_inputs(task, submission, cache_dir=cache, protocol_overrides=RECIPE, **kwargs)


def test_resolve_inputs_checks_every_name_before_any_compute(task, submission, tmp_path):
    inputs = _inputs(task, submission, tmp_path, settings=["mixed@2", "real"])
    assert (inputs.protocol, inputs.backbone_name, inputs.seeds) == ("linear-probe", "efficientnet-lite0", list(SEEDS))
    assert [s.name for s in inputs.requested] == ["mixed@2", "real"]
    assert inputs.path == submission / "results" / "efficientnet-lite0__linear-probe.json"
    assert inputs.cache_root == tmp_path and str(inputs.device) == "cpu"
    with pytest.raises(HarnessError, match="no seeds"):
        _inputs(task, submission, tmp_path, seeds=())
    with pytest.raises(Exception, match="unknown backbone 'no-such-net'"):
        _inputs(task, submission, tmp_path, backbone="no-such-net")
    with pytest.raises(HarnessError, match="checkpoint protocol scores checkpoint submissions"):
        _inputs(task, submission, tmp_path, protocol="checkpoint")


def test_plan_runs_lists_the_fillable_runs_and_why_the_others_are_skipped(task, submission, tmp_path):
    from benchmark.grid import plan_runs

    plan = plan_runs(_inputs(task, submission, tmp_path))
    fillable = [s.name for s in default_settings("linear-probe") if s.name not in UNFILLABLE]
    assert [(name, seed) for name, _, seed in plan.wanted] == [(s, seed) for s in fillable for seed in SEEDS]
    assert [s["setting"] for s in plan.skipped] == list(UNFILLABLE)
    assert plan.real_counts.tolist() == [REAL_PER_CLASS] * 6
    assert plan.pool.counts().tolist() == [SYNTHETIC_PER_INPUT * REAL_PER_CLASS] * 6
    assert len(plan.test) == 6 * 8


def test_resume_record_returns_only_the_runs_the_stored_record_lacks(first, task, submission, tmp_path):
    from benchmark.grid import identify_backbone, new_record, plan_runs, resume_record

    stored = json.loads(json.dumps(first["record"]))
    stored["runs"] = [r for r in stored["runs"] if (r["setting"], r["seed"]) != ("mixed@3", 1)]
    write_result(tmp_path / "stored.json", finalise(stored))
    inputs = _inputs(task, submission, first["cache"], out_path=tmp_path / "stored.json")
    plan = plan_runs(inputs)
    _, block = identify_backbone(inputs, image_size=IMAGE_SIZE)
    record = new_record(inputs, plan, block, official=False, leakage_checked=False, started="now")
    todo = resume_record(record, inputs, plan, official=False)
    assert [(name, seed) for name, _, seed in todo] == [("mixed@3", 1)]
    assert record["provenance"]["runs_reused"] == len(first["record"]["runs"]) - 1
    # another backbone size is another identity: nothing is reused, every run is to do
    _, other_block = identify_backbone(inputs, image_size=IMAGE_SIZE * 2)
    other = new_record(inputs, plan, other_block, official=False, leakage_checked=False, started="now")
    assert len(resume_record(other, inputs, plan, official=False)) == len(plan.wanted)
    assert other["provenance"]["runs_reused"] == 0


def test_draws_and_training_sets_follow_the_plan(task, submission, tmp_path):
    from benchmark.grid import TrainingSets, draw_subsets, plan_runs

    plan = plan_runs(_inputs(task, submission, tmp_path))
    draws = draw_subsets(plan.wanted, plan)
    assert set(draws.synthetic) == {(k, seed) for k in (1, 2, 3) for seed in SEEDS}
    assert set(draws.real) == {(10, seed) for seed in SEEDS}
    assert np.array_equal(draws.synthetic[(2, 1)], synthetic_draw(plan.pool.by_class, 1, [2 * REAL_PER_CLASS] * 6))
    sets = TrainingSets(task, plan, draws)
    data, counts = sets(SETTINGS["mixed@2"], 1)
    assert len(data) == 6 * (REAL_PER_CLASS + 2 * REAL_PER_CLASS) and int(data.is_synthetic.sum()) == 6 * 2 * REAL_PER_CLASS
    assert all(c == {"real": REAL_PER_CLASS, "synthetic": 2 * REAL_PER_CLASS} for c in counts.values())
    curve, curve_counts = sets(SETTINGS["real@10"], 0)
    assert len(curve) == 60 and not curve.is_synthetic.any()
    assert all(c == {"real": 10, "synthetic": 0} for c in curve_counts.values())
    assert sets(None, 0) == (None, {})


def test_batch_runs_groups_consecutive_seeds_of_one_setting_only_when_asked():
    from benchmark.grid import batch_runs

    real, mixed = SETTINGS["real"], SETTINGS["mixed@1"]
    todo = [("real", real, 0), ("real", real, 1), ("mixed@1", mixed, 0), ("zero-shot", None, 0)]
    assert batch_runs(todo, together=False) == [[run] for run in todo]
    assert batch_runs(todo, together=True) == [todo[:2], [todo[2]], [todo[3]]]


def test_run_entry_refuses_predictions_of_the_wrong_shape():
    from benchmark.grid import run_entry

    labels = np.array([0, 1, 1])
    counts = {"a": {"real": 2, "synthetic": 1}, "b": {"real": 2, "synthetic": 0}}
    entry = run_entry(("real", SETTINGS["real"], 3), [0] * 5, counts, [0, 1, 0], {"C": 1.0}, 0.1234,
                      test_labels=labels, classes=["a", "b"], protocol="linear-probe")
    assert (entry["seed"], entry["n_train"], entry["n_real_per_class"], entry["seconds"]) == (3, 5, 2, 0.123)
    assert entry["metrics"]["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(HarnessError, match=r"returned \(2,\) predictions for 3 test images"):
        run_entry(("real", SETTINGS["real"], 0), None, counts, [0, 1], {}, 0.0, test_labels=labels,
                  classes=["a", "b"], protocol="linear-probe")
