"""OpenAI image editing (GPT-Image-1) over the generation inputs, through the `openai` SDK.

One `client.images.edit(model, image, prompt, n=1, size, quality)` per output; GPT image models
answer base64 images (`data[0].b64_json`). The key comes from OPENAI_API_KEY, the base URL from
--base-url, else OPENAI_BASE_URL, else OpenAI's.

The SDK's own retries are off: rate limits (429), 5xx and timeouts are retried by tenacity with
exponential back-off (honouring Retry-After); a host that cannot be reached (DNS, refused
connection) and any other error (bad key, bad parameters) stop the run at once; a request refused
by moderation skips that output (a rerun retries it).
"""

from __future__ import annotations

import base64
from pathlib import Path

from ..registry import OPENAI_MODEL  # the default model, plain data (shown by --help)
from .common import (
    RETRY_STATUSES,
    APIImageEditor,
    GenerationRefused,
    GeneratorError,
    TransientAPIError,
    call_with_retries,
    decode_generated,
    generate_with_editor,
    retry_after_seconds,
    unreachable,
)

OPENAI_BASE_URL = "https://api.openai.com/v1"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
OPENAI_BASE_URL_ENV = "OPENAI_BASE_URL"
#: Error codes OpenAI uses for prompts or images its moderation refuses.
_REFUSAL_CODES = ("moderation_blocked", "content_policy_violation", "image_generation_user_error")


def _error_detail(exc) -> tuple[str, str]:
    """(message, code) of an openai.APIStatusError, from the API's {"error": {...}} body."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if isinstance(body, dict):
        return str(body.get("message") or exc), str(body.get("code") or "")
    return str(getattr(exc, "message", exc)), ""


class OpenAIImageEditor(APIImageEditor):
    """`editor(png_bytes, prompt, name) -> (image bytes, extension)` for one edit."""

    label = "OpenAI"
    key_envs = (OPENAI_KEY_ENV,)
    base_url_env = OPENAI_BASE_URL_ENV
    default_base_url = OPENAI_BASE_URL
    default_model = OPENAI_MODEL

    def __init__(self, *, size: str = "1024x1024", quality: str = "auto", extra: dict[str, str] | None = None, **connection):
        """`connection`: api_key, base_url, model, policy (see APIImageEditor)."""
        import openai

        super().__init__(**connection)
        self.options = {"size": size, "quality": quality}
        self.extra = dict(extra or {})
        self.client = openai.OpenAI(api_key=self.api_key, base_url=self.base_url, max_retries=0, timeout=self.policy.timeout)

    def _edit_once(self, png: bytes, prompt: str, name: str):
        import openai

        what = f"OpenAI {self.model} edit of {name}"
        try:
            return self.client.images.edit(
                model=self.model, image=(f"{name}.png", png, "image/png"), prompt=prompt, n=1,
                extra_body=self.extra or None, **self.options,
            )
        except openai.APITimeoutError:
            raise TransientAPIError(f"no answer within {self.policy.timeout:g} s") from None
        except openai.APIConnectionError as exc:
            raise unreachable(what, self.base_url, exc) from None
        except openai.APIStatusError as exc:
            message, code = _error_detail(exc)
            if exc.status_code in RETRY_STATUSES:
                raise TransientAPIError(f"HTTP {exc.status_code} ({message})", retry_after_seconds(exc.response.headers)) from None
            if exc.status_code == 400 and (code in _REFUSAL_CODES or "safety" in message.lower()):
                raise GenerationRefused(f"OpenAI refused the edit ({code or 'refused'}: {message})") from None
            raise GeneratorError(f"{what}: HTTP {exc.status_code}: {message}") from None

    def __call__(self, png: bytes, prompt: str, name: str = "input") -> tuple[bytes, str]:
        reply = call_with_retries(lambda: self._edit_once(png, prompt, name), policy=self.policy,
                                  what=f"OpenAI {self.model} edit of {name}")
        encoded = reply.data[0].b64_json if reply.data else None
        if not encoded:
            raise GenerationRefused(f"OpenAI reply for {name} holds no b64_json image")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (ValueError, TypeError):
            raise GenerationRefused(f"OpenAI reply for {name}: b64_json is not valid base64") from None
        return decode_generated(data, name)


def generate_openai(inputs, out_dir: str | Path, meta: dict, *, editor: OpenAIImageEditor | None = None, **options) -> dict:
    """generate_with_editor with an OpenAIImageEditor (built from the environment unless given).

    `options`: multiplier, prompt_template, store, overwrite, accept_refused, progress.
    """
    editor = editor or OpenAIImageEditor()
    return generate_with_editor(editor, inputs, out_dir, meta, desc=f"OpenAI {editor.model}", **options)
