"""Ingest: topics, payload decoding and validation, dead letters, the collector and batch writer."""
