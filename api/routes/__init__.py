"""One router per resource: metrics (definitions and series) and health."""
