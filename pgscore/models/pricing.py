"""Token accounting and cost of server calls (``spec.options.price``: USD per 1M tokens)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pgscore.errors import PgScoreError


@dataclass
class Usage:
    """Per-model accounting across all calls of one model object."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_price(price: Any) -> tuple[float, float]:
    """``{"input": x, "output": y}`` (USD per 1M tokens) -> (x, y); None -> free."""
    if price is None:
        return 0.0, 0.0
    if not isinstance(price, dict) or not {"input", "output"} >= set(price):
        raise PgScoreError('options.price must be {"input": usd_per_1M, "output": usd_per_1M}')
    try:
        return float(price.get("input", 0.0)), float(price.get("output", 0.0))
    except (TypeError, ValueError) as exc:
        raise PgScoreError(f"options.price: not a number ({exc})") from exc


def cost_of(prompt_tokens: int, completion_tokens: int, price: tuple[float, float]) -> float:
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6
