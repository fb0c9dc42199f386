"""Base model shared by every schema: strict, so a typo in data or config is an error, not a silent default."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
