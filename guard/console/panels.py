"""Status-page panels that other domains contribute (privacy deadlines, DNC registry freshness...).

A domain registers a panel with `register_panel(name, title, fn)` in a module listed in
PANEL_MODULES; the status page renders every registered panel and nothing for domains that
have not registered one. A panel that errors is shown as failed, never as fine.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from guard.policy import PolicySet

log = logging.getLogger(__name__)

# Modules that register panels; domain packages add theirs (e.g. "guard.privacy.console").
PANEL_MODULES: list[str] = ["guard.tcpa.console"]

Level = Literal["ok", "warn", "bad"]


@dataclass(frozen=True)
class PanelInput:
    """What a panel may read: the tenant's data (read-only session), its policies, the time."""

    session: Session
    tenant_id: str
    policies: PolicySet
    now: datetime


@dataclass(frozen=True)
class PanelView:
    """What a panel shows: a headline with its level, rows of (label, value), an optional note."""

    level: Level
    headline: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    note: str | None = None


PanelFn = Callable[[PanelInput], PanelView]


@dataclass(frozen=True)
class Panel:
    """A registered panel."""

    name: str
    title: str
    fn: PanelFn
    order: int


_PANELS: dict[str, Panel] = {}


def register_panel(name: str, title: str, fn: PanelFn, *, order: int = 100) -> None:
    """Add (or replace) the panel `name` on the console's status page."""
    _PANELS[name] = Panel(name, title, fn, order)


def unregister_panel(name: str) -> None:
    """Remove a panel (tests)."""
    _PANELS.pop(name, None)


def load_panels() -> list[Panel]:
    """Import every panel module; the registered panels in display order."""
    for module in PANEL_MODULES:
        importlib.import_module(module)
    return sorted(_PANELS.values(), key=lambda p: (p.order, p.name))


@dataclass(frozen=True)
class RenderedPanel:
    """A panel's title and view (or its failure)."""

    name: str
    title: str
    view: PanelView


def render_panels(inp: PanelInput) -> list[RenderedPanel]:
    """Run every panel; one that raises is reported as failed (fail closed), the rest still show."""
    out = []
    for panel in load_panels():
        try:
            # A savepoint, so a panel whose query fails leaves the page's transaction usable.
            with inp.session.begin_nested():
                view = panel.fn(inp)
        except Exception:  # a broken panel must not hide the others
            log.exception("console panel %s failed", panel.name)
            view = PanelView("bad", "this panel could not be computed; see the server log")
        out.append(RenderedPanel(panel.name, panel.title, view))
    return out
