"""A PostgreSQL (TimescaleDB) query type for grafana-foundation-sdk.

The SDK ships builders for many data sources but not for Grafana's built-in
PostgreSQL one, so we define it the way the SDK documents custom query types.
Each query also carries what it is expected to return (`columns` for tables,
`series` for time series); that stays out of the JSON Grafana sees and is what
the generator hands to tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

PLUGIN_ID = "grafana-postgresql-datasource"  # the core plugin's id since Grafana 10.3 (formerly "postgres")
Format = Literal["time_series", "table"]


@dataclass(frozen=True)
class Expectation:
    """What a query must return: a time column then numeric values, or a table's declared columns."""

    format: Format
    columns: tuple[str, ...] = ()  # tables and annotations: exactly these, in order


class PgQuery(cogvariants.Dataquery):
    """A raw-SQL target of Grafana's PostgreSQL data source."""

    def __init__(self, raw_sql: str = "", ref_id: str | None = None, fmt: Format = "time_series",
                 datasource: dashboard.DataSourceRef | None = None, hide: bool | None = None,
                 expect: Expectation | None = None) -> None:
        self.raw_sql = raw_sql
        self.ref_id = ref_id
        self.format = fmt
        self.datasource = datasource
        self.hide = hide
        self.expect = expect or Expectation(fmt)

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {"editorMode": "code", "format": self.format, "rawQuery": True,
                                      "rawSql": self.raw_sql}
        if self.ref_id is not None:
            payload["refId"] = self.ref_id
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        ds = data.get("datasource")
        return cls(raw_sql=data.get("rawSql", ""), ref_id=data.get("refId"), fmt=data.get("format", "time_series"),
                   datasource=dashboard.DataSourceRef.from_json(ds) if isinstance(ds, dict) else None,
                   hide=data.get("hide"))


class PgQueryBuilder(cogbuilder.Builder[PgQuery]):
    def __init__(self, raw_sql: str, fmt: Format = "time_series") -> None:
        self._internal = PgQuery(raw_sql=raw_sql, fmt=fmt)

    def build(self) -> PgQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def datasource(self, ref: dashboard.DataSourceRef) -> Self:
        self._internal.datasource = ref
        return self

    def expect(self, expect: Expectation) -> Self:
        self._internal.expect = expect
        return self


class SqlAnnotationTarget(dashboard.AnnotationTarget):
    """An annotation query's target for SQL data sources (the SDK's type only knows Grafana's own)."""

    def __init__(self, raw_sql: str, ref_id: str = "Anno", limit: int = 100) -> None:
        super().__init__(limit=limit, type_val="dashboard")
        self.raw_sql = raw_sql
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "refId": self.ref_id, "editorMode": "code", "format": "table",
                "rawQuery": True, "rawSql": self.raw_sql}


class SqlAnnotationTargetBuilder(cogbuilder.Builder[dashboard.AnnotationTarget]):
    def __init__(self, raw_sql: str) -> None:
        self._internal = SqlAnnotationTarget(raw_sql)

    def build(self) -> dashboard.AnnotationTarget:
        return self._internal
