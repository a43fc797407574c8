"""Auction settings: the ``auction:`` section of a pool file.

Every knob of the mechanism and every ablation lives here, validated once, so an
auction record can store exactly the settings it ran with. Example::

    auction:
      jury_mode: batched        # or per_bid (default): n calls instead of n*n
      bid_max_tokens: 128
      no_entropy: true          # ablation: w_h = 0
      weights_file: runs/weights.json

A malformed section raises ConfigError naming the field, the bad value and what is
expected (`AuctionSettings.from_dict`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sale import prompts
from sale.config import PoolConfig, validation_message
from sale.errors import ConfigError

#: Settings that change which LLM calls the original round makes; a cached original
#: round can only be reused by an auction whose settings agree on all of them.
ROUND_FIELDS = (
    "bid_max_tokens",
    "bid_temperature",
    "top_logprobs",
    "jury_mode",
    "jury_max_tokens",
    "jury_temperature",
    "jury_hardening",
    "jury_score",
    "jury",
    "no_jury",
)


class GateSettings(BaseModel):
    """``auction: gate:`` (see `sale.auction.outcomes_memory`): send a task to the agent
    that passed the ``k`` nearest past tasks (at least ``min_agreement`` of them, all at
    least ``min_similarity`` similar) with one bid call and no jury; a share
    ``explore`` of such tasks (fixed by the task id) still holds the full auction."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(default=4, ge=1, le=256)
    min_similarity: float = Field(default=0.8, ge=-1.0, le=1.0)
    min_agreement: float = Field(default=1.0, gt=0.0, le=1.0)
    explore: float = Field(default=0.1, ge=0.0, le=1.0)


class AuctionSettings(BaseModel):
    """How one auction runs.

    Bids
      - ``bid_max_tokens``: cap on a bid's output tokens (our CPU models are slow).
      - ``bid_temperature``: sampling temperature of bids (0: greedy).
      - ``top_logprobs``: k alternatives per token asked for, for the entropy H.

    Jury
      - ``jury_mode``: "per_bid" (the default: one call per juror and bid, n*n calls,
        as in the paper) or "batched" (each juror scores all bids in one call: n
        calls; small jurors tend to write one digit for every bid).
      - ``jury_max_tokens``: answer cap per scored bid (batched: times the bids).
      - ``jury_temperature``: sampling temperature of jurors.
      - ``jury_hardening``: the bid-as-data prompt and strict parsing; False uses a
        naive prompt (bid pasted inline, first digit taken), for measuring injection.
      - ``jury_score``: "expected" (the default) uses the probability-weighted mean of
        the digits 0..5 the juror considered where it wrote its score (from the
        ``top_logprobs`` alternatives; the written number where the endpoint gives
        none); "written" uses the number as written.
      - ``jury``: who scores a bid: "all" (self and peers), "self" (its bidder only)
        or "peer" (every juror but its bidder).
      - ``jury_pruning``: "exact" (the default) asks only the jury calls that can
        still change the winner and reaches the winner the whole jury would (see
        `sale.auction.pruning`: a juror of weight 0 is never asked, a bid stops being
        scored once it cannot win); "off" asks every call, as in the paper. A cached
        original round holds the whole jury, and a pruned auction that reuses it is
        charged only the calls it asks.

    Refinement
      - ``refine_k``: past tasks retrieved from memory per auction.
      - ``refine_require_success``: a past winner counts only if its execution passed.
      - ``refine_max_tokens``: cap on the refine call (analysis plus refined strategy).
      - ``refine_text_chars``: each past task and strategy shown is cut to this length.
      - ``refine_max_copied``: a refined bid drops out when more than this share of its
        4-word phrases comes from the past contests shown to it and from neither the
        current task nor the agent's own bid for it (1.0: never). Small models answer
        the refine prompt by pasting past tasks or plans; such a bid is not about the
        task, yet copied text has a low entropy and lenient jurors score it high.
      - ``refine_min_distinct``: a refined bid drops out when fewer than this share of
        its pairs of adjacent words are distinct ("The answer is: The answer is: ...");
        0.0: never. A refined bid that echoes the refine prompt's labels (``PAST TASK
        1:``) always drops out.

    Outcome memory (beyond the paper; both off by default, see
    `sale.auction.outcomes_memory`)
      - ``memory_value``: add w_m * m_i to each bid's value, m_i the bidder's
        similarity-weighted success on the ``memory_k`` nearest past tasks it
        executed, shrunk with strength ``memory_prior`` to its overall rate.
      - ``gate``: None (off) or a `GateSettings` mapping.

    Weights
      - ``weights_file``: JSON file of fitted weights (a relative path is taken from
        the pool file's folder); None: the cold-start defaults.

    Ablations (each removes exactly the term it names)
      - ``no_price``: every agent's price is the pool's mean price.
      - ``no_length``: every bid's length |s_i| is 1.
      - ``no_entropy``: w_h = 0 (entropy is still measured and recorded).
      - ``no_jury``: no jury calls at all; the jury term is 0.
      - ``no_memory``: no retrieval and no refinement (records are still stored).

    Calls
      - ``call_timeout_s``: per-call timeout for auction calls (None: the agent's own).
      - ``constrain``: "off" (the default, the paper's calls) or "auto": a bid and a
        juror's answer are constrained by a grammar where the agent's endpoint takes one
        (a plan within the word cap with no code; ``SCORE: n``; the batched jury's
        ``BID k: n`` lines), see `sale.agent.constrain`.
    """

    model_config = ConfigDict(extra="forbid")

    bid_max_tokens: int = Field(default=96, gt=0, le=8192)
    bid_temperature: float = Field(default=0.0, ge=0, le=2)
    top_logprobs: int = Field(default=5, ge=1, le=20)

    jury_mode: Literal["batched", "per_bid"] = "per_bid"
    jury_max_tokens: int = Field(default=12, gt=0, le=1024)
    jury_temperature: float = Field(default=0.0, ge=0, le=2)
    jury_hardening: bool = True
    jury_score: Literal["expected", "written"] = "expected"
    jury: Literal["all", "self", "peer"] = "all"
    jury_pruning: Literal["exact", "off"] = "exact"

    refine_k: int = Field(default=8, ge=1, le=256)
    refine_require_success: bool = False
    refine_max_tokens: int = Field(default=160, gt=0, le=8192)
    refine_text_chars: int = Field(default=600, ge=50)
    refine_max_copied: float = Field(default=0.5, gt=0.0, le=1.0)
    refine_min_distinct: float = Field(default=0.5, ge=0.0, lt=1.0)

    memory_value: bool = False
    memory_k: int = Field(default=8, ge=1, le=256)
    memory_prior: float = Field(default=2.0, gt=0.0, le=1e6)
    gate: GateSettings | None = None

    weights_file: str | None = None

    no_price: bool = False
    no_length: bool = False
    no_entropy: bool = False
    no_jury: bool = False
    no_memory: bool = False

    call_timeout_s: float | None = Field(default=None, gt=0)
    constrain: Literal["off", "auto"] = "off"

    @classmethod
    def from_dict(cls, data: Any, source: str = "auction settings") -> AuctionSettings:
        """Validate a mapping; errors name ``source``, the field and the bad value."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of auction settings, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(validation_message(source, exc, data)) from None

    @classmethod
    def from_pool(cls, config: PoolConfig, source: str = "<pool>") -> AuctionSettings:
        """The settings in a pool file's ``auction:`` section (defaults where absent)."""
        return cls.from_dict(config.auction, f"{source}: auction")

    def round_key(self) -> dict[str, Any]:
        """What an original round depends on: the settings in ROUND_FIELDS and the
        digest of its prompt files (``prompts``, see `sale.prompts`)."""
        key = {**{name: getattr(self, name) for name in ROUND_FIELDS}, "prompts": prompts.digest(prompts.ROUND)}
        if self.constrain != "off":  # rounds cached before the setting existed stay valid
            key["constrain"] = self.constrain
        return key

    def weights_path(self) -> Path | None:
        return Path(self.weights_file) if self.weights_file else None
