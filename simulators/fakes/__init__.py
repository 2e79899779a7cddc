"""Stand-ins for far ends riskwatch talks to but does not run: an SMTP sink and a webhook receiver
(`sinks`, for the demo, the bench and the tests' receivers) and Grafana's SQL macro expansion
(`grafana_sql`, for the bench and the dashboard tests).
"""

__all__ = ["grafana_sql", "sinks"]
