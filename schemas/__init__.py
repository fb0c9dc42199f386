"""Pydantic v2 data contract shared by the pipeline and training."""

from speakrl.schemas.catalog import Catalog, Domain, SlotSpec, ToolDef
from speakrl.schemas.config import RunConfig
from speakrl.schemas.dialogue import (
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
from speakrl.schemas.manifest import Manifest

__all__ = [
    "AMBIGUITY_TYPES", "Ambiguity", "Catalog", "Dialogue", "Domain", "FunctionCall", "Manifest",
    "Message", "Provenance", "Rejection", "RunConfig", "Scenario", "SlotSpec", "ToolCall", "ToolDef",
    "ToolSpec", "TurnLabel",
]
