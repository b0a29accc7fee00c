"""Chats for models without a chat template (base models): a plain ``User:`` / ``Assistant:`` rendering
and the stop string that ends the assistant's turn. Used by the transformers and vLLM backends and by
the cost plan (prompt lengths)."""

from __future__ import annotations

from typing import Sequence

from pgscore.models.base import Conversation

PLAIN_CHAT_STOPS = ("\nUser:",)


def plain_chat_prompt(conversation: Conversation) -> str:
    """Chat rendered for a model without a chat template: system text first, then User:/Assistant: turns."""
    parts: list[str] = []
    for m in conversation:
        role, content = m.get("role", "user"), m.get("content", "")
        if role == "system":
            parts.append(f"{content}\n\n")
        elif role == "assistant":
            parts.append(f"Assistant: {content}\n")
        else:
            parts.append(f"User: {content}\n")
    return "".join(parts) + "Assistant:"


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Text up to the earliest stop string, and whether one was found."""
    cut = min((i for s in stops if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
