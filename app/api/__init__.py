"""The HTTP API: one module per resource under API_PREFIX; the probes (health.py) at the root."""

API_PREFIX = "/api/v1"
