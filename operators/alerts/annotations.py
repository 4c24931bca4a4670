"""Rendering a rule's annotations for one transition, in the sandbox
:func:`config.alerts.compile_template` checked them in at load."""

from __future__ import annotations

from collections.abc import Mapping

import jinja2

from riffle.config.alerts import compile_template


def render_annotations(
    annotations: Mapping[str, str], context: Mapping[str, object]
) -> tuple[tuple[str, str], ...]:
    """Render every annotation; a template that fails at render time shows its error
    instead of losing the alert."""
    out = []
    for name, source in sorted(annotations.items()):
        try:
            text = compile_template(source).render(**context)
        except jinja2.TemplateError as exc:
            text = f"<annotation {name!r} failed: {exc}>"
        out.append((name, text))
    return tuple(out)
