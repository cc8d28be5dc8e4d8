"""Where the system prompt is chosen: `system_prompt(persona)`, the one rule for every path.

A channel's persona, else settings.SYSTEM_PROMPT, else ml.prompting.DEFAULT_SYSTEM_PROMPT.
Serving asks with the channel's persona; a training run records `system_prompt()` (no persona:
what a channel without one is served) when it starts, trains with it and is evaluated with it,
so the gate scores the prompt that is served.
"""

from __future__ import annotations

from django.conf import settings

from ml.prompting import DEFAULT_SYSTEM_PROMPT


def system_prompt(persona: str = "") -> str:
    """The system prompt for a channel with this persona ("" for a channel without one)."""
    return persona or settings.SYSTEM_PROMPT or DEFAULT_SYSTEM_PROMPT
