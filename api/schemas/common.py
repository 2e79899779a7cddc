"""Field types shared by every resource, and the page envelope of lists.

Strings refuse NUL: PostgreSQL text cannot hold it, and a request should be
told so (422) rather than fail in the database. Integer ids are bounded by
their column types for the same reason.
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

_NO_NUL = r"^[^\x00]*$"

Text = Annotated[str, StringConstraints(max_length=4000, pattern=_NO_NUL)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_NO_NUL)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000, pattern=_NO_NUL)]
Short = Annotated[str, StringConstraints(max_length=200, pattern=_NO_NUL)]
Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Int32Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
Int64Id = Annotated[int, Field(ge=1, le=2**63 - 1)]

T = TypeVar("T")


class Schema(BaseModel):
    """Requests refuse unknown fields, so a typo is an error, not a silently ignored field."""

    model_config = ConfigDict(extra="forbid")


class PublicSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    """A page of a list: `total` counts every match, `items` holds at most `limit` from `offset`."""

    items: list[T]
    total: int = Field(ge=0)
    limit: int = Field(ge=1)
    offset: int = Field(ge=0)
