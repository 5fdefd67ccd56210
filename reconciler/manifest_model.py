"""The pydantic models of a CustomerMove manifest (schemas/move.schema.json), apart from manifests.py so that
`validate` of a plainly valid manifest does not import pydantic."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
)

from reconciler.model import ID_PATTERN, NAME_PATTERN

__all__ = ["Manifest", "Metadata", "ServiceSpec", "Spec", "ValidationError"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, regex_engine="python-re")  # ID_PATTERN


# The same constraints as schemas/move.schema.json: pydantic accepts a valid manifest in microseconds;
# only a document it refuses goes through jsonschema, for path-addressed messages.
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)]
Value = StrictStr | StrictInt | StrictFloat | StrictBool | None


class ServiceSpec(_Model):
    plan: Id | None = None
    sals: dict[Id, Id] = Field(default_factory=dict)
    properties: dict[Id, Value] = Field(default_factory=dict)


class Spec(_Model):
    customer: Id
    to_reseller: Id = Field(alias="toReseller")
    location: Id
    services: dict[Id, ServiceSpec] = Field(default_factory=dict)
    allow_large: StrictBool = Field(default=False, alias="allowLarge")  # lifts policy max_users_per_move


class Metadata(_Model):
    name: Name
    ticket: Annotated[str, StringConstraints(max_length=200)] | None = None
    description: Annotated[str, StringConstraints(max_length=10000)] | None = None


class Manifest(_Model):
    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["CustomerMove"]
    metadata: Metadata
    spec: Spec
