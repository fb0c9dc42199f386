"""Pydantic v2 data contract shared by the pipeline and training."""

from schemas.catalog import Catalog, Domain, SlotSpec, ToolDef
from schemas.config import RunConfig
from schemas.dialogue import (
    AMBIGUITY_TYPES,
    Ambiguity,
    Dialogue,
    FunctionCall,
    Message,
    Provenance,
    Rejection,
    Scenario,
    ToolCall,
    ToolSpec,
    TurnLabel,
)
from schemas.manifest import Manifest

__all__ = [
    "AMBIGUITY_TYPES", "Ambiguity", "Catalog", "Dialogue", "Domain", "FunctionCall", "Manifest",
    "Message", "Provenance", "Rejection", "RunConfig", "Scenario", "SlotSpec", "ToolCall", "ToolDef",
    "ToolSpec", "TurnLabel",
]
