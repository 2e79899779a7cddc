"""Alerting stages: each a pure decision that returns a reason."""
