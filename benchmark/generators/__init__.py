"""Generators: what turns a task into a submission folder.

    baselines       classic augmentation, mixup, cutmix, duplicate (open track, from train_real)
    demo_editor     the demo task's procedural editor (generated track; the main job's generator)
    inputs          `synthbench inputs export`: the generation kit for participants
    instructpix2pix InstructPix2Pix through diffusers
    openai_edit     OpenAI image editing (gpt-image-1) over HTTP
    gemini_edit     Gemini image editing over HTTP
    common          generation inputs, the resumable SubmissionWriter, HTTP retries
    recipe          recipe entries (the shipped baselines): regenerated from the task, checked against their pin

Every generator writes the submission format of docs/SUBMITTING.md; `synthbench validate` checks it.
"""
