"""Gemini image editing over the generation inputs, through the HTTP API.

One request per output: `POST {base_url}/models/{model}:generateContent` with the header
`x-goog-api-key: $GEMINI_API_KEY` (or $GOOGLE_API_KEY) and the JSON body

    {"contents": [{"role": "user", "parts": [{"text": prompt},
                  {"inline_data": {"mime_type": "image/png", "data": "<base64>"}}]}],
     "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]}}

The reply's `candidates[0].content.parts` hold the edited image as `inlineData` {mimeType, data}
(base64); REST replies use camelCase, snake_case is accepted too. A reply without an image (a text
answer, `promptFeedback.blockReason`, or a SAFETY finish) skips that output; 429 and 5xx are
retried with exponential back-off; an interrupted run resumes where it stopped.
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

GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
GEMINI_MODEL = "gemini-2.5-flash-image"
GEMINI_KEY_ENVS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
GEMINI_BASE_URL_ENV = "GEMINI_BASE_URL"


def _inline_image(part: dict) -> tuple[str, str] | None:
    """(mime type, base64 data) of an inline image part, in either JSON casing."""
    blob = part.get("inlineData") or part.get("inline_data")
    if not isinstance(blob, dict):
        return None
    mime = blob.get("mimeType") or blob.get("mime_type") or ""
    data = blob.get("data")
    if not isinstance(data, str) or not mime.startswith("image/"):
        return None
    return mime, data


class GeminiImageEditor(HTTPImageEditor):
    """`editor(png_bytes, prompt) -> (image bytes, extension)` for one edit."""

    label = "Gemini"
    key_envs = GEMINI_KEY_ENVS
    base_url_env = GEMINI_BASE_URL_ENV
    default_base_url = GEMINI_BASE_URL
    default_model = GEMINI_MODEL

    def __call__(self, png: bytes, prompt: str, name: str = "input") -> tuple[bytes, str]:
        body = {
            "contents": [{
                "role": "user",
                "parts": [
                    {"text": prompt},
                    {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(png).decode("ascii")}},
                ],
            }],
            "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]},
        }
        response = post_with_retries(
            self.session,
            f"{self.base_url}/models/{self.model}:generateContent",
            policy=self.policy,
            what=f"Gemini {self.model} edit of {name}",
            headers={"x-goog-api-key": self.api_key, "Content-Type": "application/json"},
            json=body,
        )
        if response.status_code >= 400:
            raise GeneratorError(f"Gemini {self.model} edit of {name}: HTTP {response.status_code}: {api_error_message(response)}")
        try:
            reply = response.json()
        except ValueError:
            raise GenerationRefused(f"Gemini reply for {name} is not JSON") from None
        block = (reply.get("promptFeedback") or {}).get("blockReason")
        if block:
            raise GenerationRefused(f"Gemini blocked the prompt for {name} ({block})")
        candidates = reply.get("candidates") or []
        if not candidates:
            raise GenerationRefused(f"Gemini reply for {name} has no candidates")
        candidate = candidates[0]
        parts = ((candidate.get("content") or {}).get("parts")) or []
        texts = []
        for part in parts:
            found = _inline_image(part)
            if found:
                try:
                    data = base64.b64decode(found[1], validate=True)
                except (ValueError, TypeError):
                    raise GenerationRefused(f"Gemini reply for {name}: image data is not valid base64") from None
                return decode_generated(data, name)
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
        reason = candidate.get("finishReason", "no image part")
        said = f": {' '.join(texts)[:200]}" if texts else ""
        raise GenerationRefused(f"Gemini returned no image for {name} ({reason}){said}")


def generate_gemini(inputs, out_dir: str | Path, meta: dict, *, editor: GeminiImageEditor | None = None, **options) -> dict:
    """generate_with_editor with a GeminiImageEditor (built from the environment unless given).

    `options`: multiplier, prompt_template, progress (see generate_with_editor).
    """
    editor = editor or GeminiImageEditor()
    return generate_with_editor(editor, inputs, out_dir, meta, desc=f"Gemini {editor.model}", **options)
