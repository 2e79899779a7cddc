"""The regulatory floor: a confirmed major hazard must reach the enterprise's leaders in person.

DESIGN.md (hazard ledger): whatever its industry or source, a confirmed major hazard (重大事故隐患)
must be told to the enterprise's principal responsible person (主要负责人) and actual controller
(实际控制人) by a per-contact channel (SMS or e-mail). `alerting.config` refuses a routing file
that does not; this module only decides, by routing every case through the real route tree.
"""

from __future__ import annotations

from alerting.route import Event, route
from alerting.routing import AlertingConfig
from alerting.schema import HAZARD_SOURCES, INDUSTRIES, PER_CONTACT_TYPES

__all__ = ["hazard_reach_failures"]

_ROLES = {"principal": ("主要负责人", "principal responsible person"),
          "controller": ("实际控制人", "actual controller")}


def _reaches(cfg: AlertingConfig, receiver: str, role: str) -> bool:
    r = cfg.receivers[receiver]
    return any(t.enterprise == role for t in r.to) and any(cfg.channels[c].type in PER_CONTACT_TYPES for c in r.via)


def hazard_reach_failures(cfg: AlertingConfig) -> list[str]:
    """Route a confirmed urgent hazard of every industry and source; each must reach both leaders in person.

    Returns one message per (routes taken, leaders missed), for the file's `routes:` key; empty when the
    floor holds.

    Enterprise, plant and rule are left unknown: the floor must hold for any enterprise. Escalation
    does not count, since it only happens if the bureau fails to acknowledge.
    """
    if not cfg.receivers:
        return []  # the built-in "send nothing" routing (alerting.config.default_config_text)

    failures: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for industry in INDUSTRIES:
        for source in HAZARD_SOURCES:
            ev = Event(kind="hazard", event="confirmed", industry=industry, source=source, severity="urgent")
            matches = route(cfg, ev)
            names = {n for m in matches for n in m.receivers}
            missing = tuple(role for role in _ROLES if not any(_reaches(cfg, n, role) for n in names))
            if missing:
                failures.setdefault((tuple(m.path for m in matches), missing), []).append(f"{industry}/{source}")
    every = len(INDUSTRIES) * len(HAZARD_SOURCES)
    out: list[str] = []
    for (paths, missing), cases in failures.items():
        which = "所有行业和来源 every industry and source" if len(cases) == every else ", ".join(cases)
        zh = "、".join(_ROLES[r][0] for r in missing)
        en = " and ".join(_ROLES[r][1] for r in missing)
        via = ", ".join(paths)
        out.append("确认的重大事故隐患必须经短信或邮件通知企业主要负责人和实际控制人，"
                   f"但经路由 {via} 未通知{zh}；"
                   "a confirmed major hazard must reach the enterprise's principal responsible person and"
                   f" actual controller by SMS or e-mail, but via {via} it reaches no {en} ({which})."
                   " Route it to a receiver with `to: [{enterprise: principal}, {enterprise: controller}]`"
                   " and an smtp or sms channel.")
    return out
