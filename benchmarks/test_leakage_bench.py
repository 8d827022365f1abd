"""The leakage gate: how well it finds near-copies of test images, how rarely it rejects distinct
images, and how fast it matches.

    .venv/bin/python -m pytest benchmarks/test_leakage_bench.py -s

* `test_gate_quality_on_aid6`: real aerial images (../shared/data/aid6; skipped when absent).
  References play the test split; near-copies of each (every kind of transformation in
  benchmark.submissions.leakage_eval.NEAR_COPIES) must be found (recall), distinct images of the
  same classes must pass (false rejections). Default backbone configuration. The figures the
  documentation states (baselines, genuine held-out images, recall per transformation, cost) come
  from `benchmarks/test_gate_bench.py`, on a deduplicated image-folder task.
* `test_gate_matching_speed`: milliseconds per submitted image for the matching stage (pHash,
  retrieval, the prefilter cascade, geometric verification) against a fixed reference index of
  procedural scenes, embeddings precomputed (random), queries distinct scenes: the common case,
  where the cascade's prefilter drops nearly every candidate. The cascade's stage counts are
  printed; `ms_per_verified_pair` is what a pair that reaches verification costs.

Figures are printed and stored in extra_info (--benchmark-json FILE keeps them). Sizes are
environment-tunable: SYNTHBENCH_BENCH_LEAK_REFS (references per class, 50),
SYNTHBENCH_BENCH_LEAK_NEGS (distinct images per class, 100), SYNTHBENCH_BENCH_LEAK_QUERIES (200).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image

from benchmark.images import ImageRef, encode_png
from benchmark.io import sha256_bytes
from benchmark.submissions.leakage import ReferenceGroup, find_near_copies, query_signature, reference_index

REFS_PER_CLASS = int(os.environ.get("SYNTHBENCH_BENCH_LEAK_REFS", 50))
NEGS_PER_CLASS = int(os.environ.get("SYNTHBENCH_BENCH_LEAK_NEGS", 100))
N_QUERIES = int(os.environ.get("SYNTHBENCH_BENCH_LEAK_QUERIES", 200))




def test_gate_quality_on_aid6(benchmark, aid6_root, tmp_path):
    from benchmark.submissions.leakage import default_embedder
    from benchmark.submissions.leakage_eval import aid6_split, measure_gate

    references, negatives = aid6_split(aid6_root, references_per_class=REFS_PER_CLASS, negatives_per_class=NEGS_PER_CLASS)
    embedder = default_embedder(tmp_path / "cache")
    result = benchmark.pedantic(
        measure_gate, args=(references, negatives, embedder), kwargs={"cache_dir": tmp_path / "cache"},
        rounds=1, iterations=1,
    )
    print("\n" + result.summary())
    for line in result.false_rejections:
        print("  false rejection:", line)
    benchmark.extra_info.update({
        "n_references": result.n_references,
        "n_negatives": result.n_negatives,
        "recall": result.recall,
        "correct_reference": result.correct_reference,
        "pooled_recall": result.pooled_recall,
        "false_rejection_rate": result.false_rejection_rate,
        "ms_per_query": result.seconds_per_query * 1000,
    })


def _scene(seed: int, size: int = 128) -> Image.Image:
    """A procedural overhead scene (the demo task's renderer): terrain, fields, water, roads, houses."""
    from benchmark.tasks.demo import render_scene

    return render_scene(np.random.default_rng(seed), size)


def _ref(image: Image.Image, name: str) -> ImageRef:
    data = encode_png(image)
    return ImageRef(sha256_bytes(data), data, name=name)


def test_gate_matching_speed(benchmark):
    n_refs = 6 * REFS_PER_CLASS
    references = [_ref(_scene(i), f"ref-{i}") for i in range(n_refs)]
    dim = 1280
    rng = np.random.default_rng(0)

    def embed(refs, progress=False):  # stand-in features: the stage timed here is matching
        return rng.normal(size=(len(refs), dim)).astype(np.float32)

    index = reference_index([ReferenceGroup("test", references, [""] * n_refs)], embed, embedder_id="random", cache_dir=None)
    queries = [_scene(10_000 + i) for i in range(N_QUERIES)]
    signatures = [query_signature(image) for image in queries]
    embeddings = embed(queries)

    start = time.perf_counter()
    result = benchmark.pedantic(find_near_copies, args=(index, signatures, embeddings), rounds=1, iterations=1)
    seconds = time.perf_counter() - start
    ms = seconds / N_QUERIES * 1000
    print(f"\nleakage matching: {ms:.1f} ms per query against {n_refs} references ({len(result.matches)} matches)")
    print("cascade (pairs past each stage): " + ", ".join(f"{stage} {n}" for stage, n in result.stages.items()))

    # Verification alone: every candidate of a few queries verified (no prefilter).
    from benchmark import nearcopy as leakage

    verify = signatures[:20]
    start = time.perf_counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(leakage, "PREFILTER_STAGES", ((16, -1.0), (32, -1.0)))
        unfiltered = find_near_copies(index, verify, embeddings[:20])
    verified_ms = (time.perf_counter() - start) / max(1, unfiltered.stages["verified"]) * 1000
    print(f"verification: {verified_ms:.2f} ms per verified pair ({unfiltered.stages['verified']} pairs)")
    benchmark.extra_info.update({
        "ms_per_query": ms, "n_references": n_refs, "n_queries": N_QUERIES, "stages": result.stages,
        "ms_per_verified_pair": verified_ms,
    })
