"""The app's pages and the permission each needs: one table, read by ``app.py`` to build the
navigation of the signed-in role (a page a role may not open is not in its navigation at all)."""

from __future__ import annotations

from dataclasses import dataclass

from core.authz import GRANTS, Permission


@dataclass(frozen=True)
class PageSpec:
    path: str
    """The page file, relative to the project root."""
    title: str
    icon: str
    group: str
    """The navigation section the page is listed under."""
    permission: Permission
    """What a role must be granted to see the page in its navigation and open it."""


PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/write.py", "Write", ":material/edit_note:", "Research", Permission.DRAFT),
    PageSpec(
        "pages/verification.py", "Verification", ":material/fact_check:", "Research", Permission.VIEW_VERIFICATION
    ),
    PageSpec("pages/costs.py", "Costs", ":material/payments:", "Operations", Permission.VIEW_COSTS),
    PageSpec("pages/routing.py", "Routing", ":material/alt_route:", "Operations", Permission.VIEW_ROUTING),
    PageSpec("pages/trajectories.py", "Trajectories", ":material/timeline:", "Operations", Permission.VIEW_TRACES),
    PageSpec("pages/replay.py", "Replay", ":material/replay:", "Operations", Permission.VIEW_TRACE_CONTENT),
    PageSpec("pages/prompts.py", "Prompts", ":material/description:", "Operations", Permission.VIEW_PROMPTS),
    PageSpec("pages/operations.py", "Operations", ":material/monitor_heart:", "Operations", Permission.VIEW_OPERATIONS),
    PageSpec("pages/runbook.py", "Runbook", ":material/menu_book:", "Operations", Permission.VIEW_OPERATIONS),
    PageSpec("pages/models.py", "Models", ":material/model_training:", "Operations", Permission.VIEW_MODELS),
    PageSpec("pages/audit.py", "Audit log", ":material/policy:", "Operations", Permission.VIEW_AUDIT),
    PageSpec("pages/users.py", "Users and tenants", ":material/group:", "Admin", Permission.MANAGE_USERS),
    PageSpec("pages/api_tokens.py", "API tokens", ":material/key:", "Account", Permission.USE_API),
)
"""Every page, in navigation order; the first one a role may open is its start page."""


def pages_for(role: str) -> tuple[PageSpec, ...]:
    """The pages ``role`` may open, in navigation order."""
    granted = GRANTS.get(role, frozenset())
    return tuple(page for page in PAGES if page.permission in granted)


def spec_of(path: str) -> PageSpec | None:
    return next((page for page in PAGES if page.path == path), None)
