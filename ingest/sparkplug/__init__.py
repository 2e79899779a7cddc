"""Sparkplug B host application (issue 18): Tahu payload codec, topics, per-edge-node sessions (docs/sparkplug.md)."""
