"""The leakage gate's policy: no submitted image may be a near-copy of a test image (or, in the
generated track, of a real train image passed off as generated).

The detector itself (signatures, the retrieval and verification cascade, the stored reference
indexes, the decision rule and its calibration) is `benchmark.nearcopy`, shared with the task
builders, which deduplicate a task's training splits against its test split with it. This module
says what the gate compares a submission with:

* **references**: the task's test split (and any other split named `test*`); in the generated
  track also train_real (real images may not be submitted as generated);
* **the same-pair exemption**: an image made from a generation input is aligned with that input's
  own train tile by construction, so against that one image only an exact copy counts.

The names callers used from here before the detector moved are re-exported.
"""

from __future__ import annotations

from typing import Sequence

from ..nearcopy import (  # noqa: F401  (re-exported)
    GATE_VERSION,
    NCC_MIN,
    PHASH_MAX_DISTANCE,
    BackboneEmbedder,
    EmbedFn,
    GateResult,
    LeakageMatch,
    QuerySignature,
    ReferenceGroup,
    ReferenceIndex,
    default_embedder,
    dihedral,
    find_near_copies,
    hamming,
    phash_bits,
    phash_dihedral,
    query_scores,
    query_signature,
    reference_index,
)


def reference_groups(task, track: str | None) -> list[ReferenceGroup]:
    """The reference images a submission of `track` is checked against, one group per split."""
    splits = ["test"] + [s for s in task.splits if s.startswith("test") and s != "test"]
    groups = [ReferenceGroup(s, task.image_refs(s), task.column(s, "pair_id")) for s in splits]
    if track != "open":  # generated (or an invalid track, already reported): the strict rule
        groups.append(ReferenceGroup("train_real", task.image_refs("train_real"), task.column("train_real", "pair_id")))
    return groups


def same_pair_ids(task, source_ids: Sequence[str | None]) -> list[str | None]:
    """Per submitted image (by the generation input it was made from, or None), the pair id of the
    train tile it may match only by an exact copy."""
    pair_of_input = dict(zip(task.image_ids("generation_inputs"), task.column("generation_inputs", "pair_id")))
    return [(pair_of_input.get(s) or None) if s else None for s in source_ids]
