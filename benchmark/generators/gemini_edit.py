"""Gemini image editing over the generation inputs, through Google's `google-genai` SDK.

One `client.models.generate_content(model, contents=[prompt, image], config)` per output, asking
for the TEXT and IMAGE response modalities; the edited image is the first inline-data part of the
first candidate. The key comes from GEMINI_API_KEY (or GOOGLE_API_KEY), the base URL from
--base-url, else GEMINI_BASE_URL, else Google's.

The SDK's retries are off: 429, 5xx and timeouts are retried by tenacity with exponential
back-off; an unreachable host and other errors stop the run at once; a reply without an image
(a text answer, a blocked prompt, a SAFETY finish) skips that output (a rerun retries it).
"""

from __future__ import annotations

import base64
from pathlib import Path

from ..registry import GEMINI_MODEL  # the default model, plain data (shown by --help)
from .common import (
    RETRY_STATUSES,
    APIImageEditor,
    GenerationRefused,
    GeneratorError,
    TransientAPIError,
    call_with_retries,
    decode_generated,
    generate_with_editor,
    is_timeout,
    retry_after_seconds,
    unreachable,
)

GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"
GEMINI_API_VERSION = "v1beta"
GEMINI_KEY_ENVS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
GEMINI_BASE_URL_ENV = "GEMINI_BASE_URL"


def _image_bytes(data) -> bytes:
    """Inline data as bytes (the SDK decodes base64; a str is still base64)."""
    if isinstance(data, str):
        return base64.b64decode(data, validate=True)
    return bytes(data)


class GeminiImageEditor(APIImageEditor):
    """`editor(png_bytes, prompt, name) -> (image bytes, extension)` for one edit."""

    label = "Gemini"
    key_envs = GEMINI_KEY_ENVS
    base_url_env = GEMINI_BASE_URL_ENV
    default_base_url = GEMINI_BASE_URL
    default_model = GEMINI_MODEL

    def __init__(self, **connection):
        """`connection`: api_key, base_url, model, policy (see APIImageEditor)."""
        from google import genai
        from google.genai import types

        super().__init__(**connection)
        options = types.HttpOptions(base_url=self.base_url + "/", api_version=GEMINI_API_VERSION,
                                    timeout=int(self.policy.timeout * 1000))
        self.client = genai.Client(api_key=self.api_key, http_options=options)

    def _generate_once(self, png: bytes, prompt: str, name: str):
        from google.genai import errors, types

        what = f"Gemini {self.model} edit of {name}"
        try:
            return self.client.models.generate_content(
                model=self.model,
                contents=[types.Content(role="user", parts=[
                    types.Part.from_text(text=prompt), types.Part.from_bytes(data=png, mime_type="image/png"),
                ])],
                config=types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"]),
            )
        except errors.APIError as exc:
            if exc.code in RETRY_STATUSES:
                headers = getattr(getattr(exc, "response", None), "headers", None)
                raise TransientAPIError(f"HTTP {exc.code} ({exc.message})", retry_after_seconds(headers)) from None
            raise GeneratorError(f"{what}: HTTP {exc.code}: {exc.message}") from None
        except Exception as exc:  # the SDK's HTTP library: a timeout is retried, any other transport error is not
            if is_timeout(exc):
                raise TransientAPIError(f"no answer within {self.policy.timeout:g} s") from None
            if any(cls.__name__ in ("ConnectError", "TransportError", "NetworkError") for cls in type(exc).__mro__):
                raise unreachable(what, self.base_url, exc) from None
            raise

    def __call__(self, png: bytes, prompt: str, name: str = "input") -> tuple[bytes, str]:
        reply = call_with_retries(lambda: self._generate_once(png, prompt, name), policy=self.policy,
                                  what=f"Gemini {self.model} edit of {name}")
        block = getattr(reply.prompt_feedback, "block_reason", None) if reply.prompt_feedback else None
        if block:
            raise GenerationRefused(f"Gemini blocked the prompt for {name} ({getattr(block, 'value', block)})")
        if not reply.candidates:
            raise GenerationRefused(f"Gemini reply for {name} has no candidates")
        candidate = reply.candidates[0]
        parts = (candidate.content.parts if candidate.content else None) or []
        texts = []
        for part in parts:
            blob = part.inline_data
            if blob is not None and blob.data and (blob.mime_type or "").startswith("image/"):
                try:
                    data = _image_bytes(blob.data)
                except (ValueError, TypeError):
                    raise GenerationRefused(f"Gemini reply for {name}: image data is not valid base64") from None
                return decode_generated(data, name)
            if part.text:
                texts.append(part.text)
        reason = getattr(candidate.finish_reason, "value", candidate.finish_reason) or "no image part"
        said = f": {' '.join(texts)[:200]}" if texts else ""
        raise GenerationRefused(f"Gemini returned no image for {name} ({reason}){said}")


def generate_gemini(inputs, out_dir: str | Path, meta: dict, *, editor: GeminiImageEditor | None = None, **options) -> dict:
    """generate_with_editor with a GeminiImageEditor (built from the environment unless given).

    `options`: multiplier, prompt_template, store, overwrite, accept_refused, progress.
    """
    editor = editor or GeminiImageEditor()
    return generate_with_editor(editor, inputs, out_dir, meta, desc=f"Gemini {editor.model}", **options)
