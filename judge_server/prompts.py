"""Chat requests for the judge model, built from the prompt templates in prompts/.

The layout serves vLLM's prefix cache: the G candidates of one image share the instruction text,
the degraded input and the reference, so those come first and the restored image (the only part
that differs) last: text, degraded, reference, restored (the templates refer to them by that order).
The iqa mode keeps Q-Align's layout, image then question (docs/judge-iqa.md).
"""

from __future__ import annotations

import base64
from functools import cache
from importlib import resources

from irpo_common.tasks import check_covers_tasks

from .settings import JudgeSettings

TASK_NAMES = {
    "denoise": "noise",
    "derain": "rain",
    "dehaze": "haze",
    "deblur": "blur",
    "lowlight": "low-light",
    "face": "blur, low resolution, noise and JPEG compression (a degraded face)",
}
check_covers_tasks(TASK_NAMES, "judge_server.prompts.TASK_NAMES")


@cache
def template(name: str) -> str:
    return resources.files("judge_server").joinpath("prompts", f"{name}.txt").read_text(encoding="utf-8")


def template_name(mode: str, reference_free: bool) -> str:
    return "fast_noref" if reference_free and mode == "fast" else mode


def _task_hint(task: str | None) -> str:
    return f"The input is known to be degraded by {TASK_NAMES[task]}." if task else ""


def _image_part(png: bytes) -> dict:
    url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}


def chat_body(settings: JudgeSettings, mode: str, images: list[bytes], task: str | None) -> dict:
    """The /chat/completions body for one judgement; `images` are PNG bytes: degraded, reference,
    restored, or restored alone."""
    text = template(template_name(mode, len(images) == 1)).format(task_hint=_task_hint(task)).strip()
    parts = [{"type": "text", "text": text}], [_image_part(png) for png in images]
    content = parts[1] + parts[0] if mode == "iqa" else parts[0] + parts[1]
    body: dict = {"model": settings.model, "messages": [{"role": "user", "content": content}]}
    if mode == "reasoned":
        body.update(max_tokens=settings.reasoned_max_tokens, temperature=settings.temperature)
        return body
    body.update(max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=settings.top_logprobs)
    prefix = settings.iqa_assistant_prefix if mode == "iqa" else settings.fast_assistant_prefix
    if prefix:
        # vLLM extension: the model continues our partial answer, so the next token is the digit (word).
        body["messages"].append({"role": "assistant", "content": prefix})
        body.update(continue_final_message=True, add_generation_prompt=False)
    return body
