"""riskwatch's faces: `api.http` (the HTTP app), `api.cli` (the `riskwatch` command line),
`api.run` (the composition root: serve, demo, collect, dispatch) and `api.grafana` (dashboards).

Faces do not import each other, except that `api.cli` dispatches to `api.run` (and `api.grafana`
for its commands) and `api.run` composes `api.http` and `api.grafana`.
"""
