"""riskwatch edge agent: reads Modbus TCP and OPC UA in the plant, buffers on disk, publishes over mqtts://.

`main(argv)` is the command line (`riskwatch edge CONFIG`, or `python -m ingest.edge CONFIG`). The guarantee
and its limits are in docs/edge.md.
"""

from __future__ import annotations

import argparse
import logging
import sys

from core.errors import RiskwatchError, SourceError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Validate the config, then run the agent until SIGTERM/SIGINT. 0 on a clean stop, 2 on a bad config."""
    p = argparse.ArgumentParser(prog="riskwatch edge", description="riskwatch edge agent (gateway side)")
    p.add_argument("config", help="the agent's YAML file")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The libraries log tracebacks for every lost connection; the agent reports those itself, once.
    for noisy in ("pymodbus", "asyncua"):
        logging.getLogger(noisy).setLevel(logging.WARNING if args.verbose else logging.CRITICAL)
    from ingest.edge.agent import run_agent
    from ingest.edge.config import load_config

    try:
        cfg = load_config(args.config)
    except SourceError as exc:
        print(f"配置错误 invalid edge config:\n{exc}", file=sys.stderr)
        return 2
    if args.check:
        fmt = "" if cfg.publish.group_id is None else f"; {cfg.publish.format}, group {cfg.publish.group_id!r}"
        print(f"{args.config}: OK ({sum(len(s.tags) for s in cfg.sources)} tags, gateway {cfg.gateway}{fmt})")
        return 0
    try:
        run_agent(cfg)
    except RiskwatchError as exc:
        print(f"edge: {exc}", file=sys.stderr)
        return 1
    return 0
