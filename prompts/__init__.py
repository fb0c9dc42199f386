"""Jinja2 prompt templates (package data, so they ship in a wheel)."""
