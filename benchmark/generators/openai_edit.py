"""OpenAI image editing (GPT-Image-1) over the generation inputs, through the HTTP API.

One request per output: `POST {base_url}/images/edits` as multipart/form-data with the fields
`model`, `prompt`, `n=1`, `size`, `quality` and the input image as the file field `image`,
authenticated by `Authorization: Bearer $OPENAI_API_KEY`. GPT image models answer
`{"created": ..., "data": [{"b64_json": "<base64 PNG>"}], "usage": {...}}`.

Rate limits (429) and server errors (5xx) are retried with exponential back-off (honouring
Retry-After); a request refused by moderation skips that output; bad keys or parameters stop the
run. Outputs are written as they arrive, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import base64
from pathlib import Path

from .common import (
    GenerationRefused,
    GeneratorError,
    HTTPImageEditor,
    api_error_message,
    decode_generated,
    generate_with_editor,
    post_with_retries,
)

OPENAI_BASE_URL = "https://api.openai.com/v1"
OPENAI_MODEL = "gpt-image-1"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
OPENAI_BASE_URL_ENV = "OPENAI_BASE_URL"
#: Error codes OpenAI uses for prompts or images its moderation refuses.
_REFUSAL_CODES = ("moderation_blocked", "content_policy_violation", "image_generation_user_error")


class OpenAIImageEditor(HTTPImageEditor):
    """`editor(png_bytes, prompt) -> (image bytes, extension)` for one edit."""

    label = "OpenAI"
    key_envs = (OPENAI_KEY_ENV,)
    base_url_env = OPENAI_BASE_URL_ENV
    default_base_url = OPENAI_BASE_URL
    default_model = OPENAI_MODEL

    def __init__(
        self,
        *,
        model: str = OPENAI_MODEL,
        size: str = "1024x1024",
        quality: str = "auto",
        extra: dict[str, str] | None = None,
        **connection,
    ):
        """`connection`: api_key, base_url, policy, session (see HTTPImageEditor)."""
        super().__init__(model=model, **connection)
        self.fields = {"model": self.model, "n": "1", "size": size, "quality": quality, **(extra or {})}

    def __call__(self, png: bytes, prompt: str, name: str = "input") -> tuple[bytes, str]:
        response = post_with_retries(
            self.session,
            f"{self.base_url}/images/edits",
            policy=self.policy,
            what=f"OpenAI {self.model} edit of {name}",
            headers={"Authorization": f"Bearer {self.api_key}"},
            data={**self.fields, "prompt": prompt},
            files={"image": (f"{name}.png", png, "image/png")},
        )
        if response.status_code >= 400:
            message = api_error_message(response)
            try:
                code = (response.json().get("error") or {}).get("code") or ""
            except (ValueError, AttributeError):
                code = ""
            if response.status_code == 400 and (code in _REFUSAL_CODES or "safety" in message.lower()):
                raise GenerationRefused(f"OpenAI refused the edit ({code or 'refused'}: {message})")
            raise GeneratorError(f"OpenAI {self.model} edit of {name}: HTTP {response.status_code}: {message}")
        try:
            item = response.json()["data"][0]
            encoded = item["b64_json"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise GenerationRefused(f"OpenAI reply for {name} holds no b64_json image") from None
        try:
            data = base64.b64decode(encoded, validate=True)
        except (ValueError, TypeError):
            raise GenerationRefused(f"OpenAI reply for {name}: b64_json is not valid base64") from None
        return decode_generated(data, name)


def generate_openai(inputs, out_dir: str | Path, meta: dict, *, editor: OpenAIImageEditor | None = None, **options) -> dict:
    """generate_with_editor with an OpenAIImageEditor (built from the environment unless given).

    `options`: multiplier, prompt_template, progress (see generate_with_editor).
    """
    editor = editor or OpenAIImageEditor()
    return generate_with_editor(editor, inputs, out_dir, meta, desc=f"OpenAI {editor.model}", **options)
