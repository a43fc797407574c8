"""The ``serve:`` section of a pool file::

    serve:
      fallback: big        # the agent that takes a task whose auction failed (default: the largest)
      ttl_s: 86400         # a binding lives this long after its last request
      keepalive_s: 5       # an SSE comment every this many seconds while a stream waits
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sale.config import validation_message
from sale.errors import ConfigError


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fallback: str | None = None
    ttl_s: float = Field(default=86400.0, gt=0, allow_inf_nan=False)
    keepalive_s: float = Field(default=5.0, gt=0, allow_inf_nan=False)

    @classmethod
    def from_pool(cls, pool: Any) -> "ServeSettings":
        """From ``pool``'s ``serve:`` section, checked against its agents."""
        data = dict(pool.config.serve or {})
        try:
            settings = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(validation_message(f"{pool.source}: serve", exc, data)) from None
        if settings.fallback is not None and settings.fallback not in pool.names:
            raise ConfigError(
                f"{pool.source}: serve.fallback: no agent named '{settings.fallback}' "
                f"(agents: {', '.join(pool.names)})"
            )
        return settings
