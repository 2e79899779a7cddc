"""Field types shared by every resource, and the page envelope of lists.

Strings refuse NUL: PostgreSQL text cannot hold it, and a request should be
told so (422) rather than fail in the database. Integer ids are bounded by
their column types for the same reason, and datetimes (`Timestamp`) by what
the server can compute with: `0001-01-01T00:00:00+14:00` is a valid local time
whose UTC instant falls before year 1, which Python cannot represent (a 500
before this type existed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

_NO_NUL = r"^[^\x00]*$"

Text = Annotated[str, StringConstraints(max_length=4000, pattern=_NO_NUL)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_NO_NUL)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000, pattern=_NO_NUL)]
Short = Annotated[str, StringConstraints(max_length=200, pattern=_NO_NUL)]
Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Int32Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
Int64Id = Annotated[int, Field(ge=1, le=2**63 - 1)]

#: Accepted instants, in UTC. Python's datetime spans years 1..9999 (PostgreSQL's timestamptz far more); a few
#: days' margin at both ends leaves room for the windows handlers derive (`to` - 24 h, a bucket's origin).
TIMESTAMP_MIN = datetime(1, 1, 8, tzinfo=UTC)
TIMESTAMP_MAX = datetime(9999, 12, 24, tzinfo=UTC)


def _in_range(v: datetime) -> datetime:
    """The value unchanged, or ValueError (a 422) when its instant lies outside what the server can handle."""
    try:
        u = v.astimezone(UTC)
    except (OverflowError, ValueError):
        u = None
    if u is None or not TIMESTAMP_MIN <= u <= TIMESTAMP_MAX:
        raise ValueError(f"时间超出范围 datetime out of range: allowed {TIMESTAMP_MIN.date().isoformat()} .. "
                         f"{TIMESTAMP_MAX.date().isoformat()} UTC")
    return v


#: Every datetime a request carries (query or body): timezone-aware and within range.
Timestamp = Annotated[AwareDatetime, AfterValidator(_in_range)]

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
