"""Pydantic v2 schema families per resource: Create / Update / Public (and action bodies)."""
