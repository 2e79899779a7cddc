"""riskwatch's own error tree.

    RiskwatchError
    ├── ConfigError          bad settings, environment or CLI input
    ├── SourceError          a YAML file failed validation (file:line for each problem)
    ├── ServiceError         a private local service could not be started or reached
    └── MigrationError       a migration failed to apply
"""

from __future__ import annotations

from dataclasses import dataclass


class RiskwatchError(Exception):
    """Base class for errors riskwatch raises on purpose."""


class ConfigError(RiskwatchError):
    pass


class ServiceError(RiskwatchError):
    pass


class MigrationError(RiskwatchError):
    pass


@dataclass(frozen=True)
class SourceProblem:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


class SourceError(RiskwatchError):
    """One or more problems in a YAML source file, each with file and line."""

    def __init__(self, problems: list[SourceProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
