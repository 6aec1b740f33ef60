"""Roles and what each may do: one table, asked by pages (to hide and refuse) and by core (to refuse).

A page hides what a role may not do; the core function refuses it anyway, so a crafted request
or a bug in a page cannot do more than the role grants. Content is always read in the caller's
own tenant; the cross-tenant permission (``VIEW_ALL_TENANTS``) covers metadata only: spend per
tenant, users, the audit log.
"""

from __future__ import annotations

import getpass
from enum import StrEnum

from core.errors import PermissionDeniedError
from core.tenancy import Identity

RESEARCHER, OPS, PROMPT_ENGINEER, ADMIN = "researcher", "ops", "prompt_engineer", "admin"
ROLES = (RESEARCHER, OPS, PROMPT_ENGINEER, ADMIN)


class Permission(StrEnum):
    DRAFT = "draft"
    """Upload PDFs, draft, edit, re-verify and accept paragraphs."""
    VIEW_VERIFICATION = "view_verification"
    VIEW_COSTS = "view_costs"
    VIEW_ROUTING = "view_routing"
    CHANGE_ROUTING = "change_routing"
    VIEW_TRACES = "view_traces"
    """The trajectory list and span timings (no prompt or output text)."""
    VIEW_TRACE_CONTENT = "view_trace_content"
    """Decrypted prompts, outputs and tool calls of the own tenant's traces (each view is audited)."""
    VIEW_PROMPTS = "view_prompts"
    MANAGE_PROMPTS = "manage_prompts"
    VIEW_OPERATIONS = "view_operations"
    KILL_SWITCH = "kill_switch"
    RESET_BREAKERS = "reset_breakers"
    MANAGE_ALERTS = "manage_alerts"
    MANAGE_BUDGETS = "manage_budgets"
    """Set the workspace's own token budgets (the Operations page)."""
    VIEW_MODELS = "view_models"
    MANAGE_MODELS = "manage_models"
    VIEW_AUDIT = "view_audit"
    EXPORT_AUDIT = "export_audit"
    MANAGE_USERS = "manage_users"
    VIEW_ALL_TENANTS = "view_all_tenants"
    MANAGE_KEYS = "manage_keys"
    BACKUP = "backup"
    USE_API = "use_api"
    """Hold bearer tokens of the ops API (the API tokens page); what a token may do is its role's."""


P = Permission
GRANTS: dict[str, frozenset[Permission]] = {
    RESEARCHER: frozenset({P.DRAFT, P.VIEW_VERIFICATION, P.USE_API}),
    PROMPT_ENGINEER: frozenset(
        {
            P.DRAFT,
            P.VIEW_VERIFICATION,
            P.VIEW_COSTS,
            P.VIEW_ROUTING,
            P.CHANGE_ROUTING,
            P.VIEW_TRACES,
            P.VIEW_TRACE_CONTENT,
            P.VIEW_PROMPTS,
            P.MANAGE_PROMPTS,
            P.VIEW_MODELS,
            P.USE_API,
        }
    ),
    OPS: frozenset(
        {
            P.VIEW_VERIFICATION,
            P.VIEW_COSTS,
            P.VIEW_ROUTING,
            P.CHANGE_ROUTING,
            P.VIEW_TRACES,
            P.VIEW_TRACE_CONTENT,
            P.VIEW_PROMPTS,
            P.VIEW_OPERATIONS,
            P.KILL_SWITCH,
            P.RESET_BREAKERS,
            P.MANAGE_ALERTS,
            P.MANAGE_BUDGETS,
            P.VIEW_MODELS,
            P.VIEW_AUDIT,
            P.USE_API,
        }
    ),
    ADMIN: frozenset(Permission),
}
"""Which permissions each role holds."""

DESCRIPTIONS: dict[Permission, str] = {
    P.DRAFT: "upload sources or draft, edit, re-verify and accept paragraphs",
    P.VIEW_VERIFICATION: "see verification results",
    P.VIEW_COSTS: "see costs",
    P.VIEW_ROUTING: "see the routing configuration",
    P.CHANGE_ROUTING: "change routing",
    P.VIEW_TRACES: "see trajectories",
    P.VIEW_TRACE_CONTENT: "read the decrypted content of traces",
    P.VIEW_PROMPTS: "see prompt versions",
    P.MANAGE_PROMPTS: "activate, canary or roll back prompt versions",
    P.VIEW_OPERATIONS: "see the Operations page",
    P.KILL_SWITCH: "engage or release the kill switch",
    P.RESET_BREAKERS: "reset circuit breakers",
    P.MANAGE_ALERTS: "change alert rules",
    P.MANAGE_BUDGETS: "change token budgets",
    P.VIEW_MODELS: "see the model registry",
    P.MANAGE_MODELS: "change the model registry",
    P.VIEW_AUDIT: "search the audit log",
    P.EXPORT_AUDIT: "export the audit log or an access review",
    P.MANAGE_USERS: "manage users and tenants",
    P.VIEW_ALL_TENANTS: "see other workspaces",
    P.MANAGE_KEYS: "rotate encryption keys",
    P.BACKUP: "back up or restore the workbench",
    P.USE_API: "create and revoke API tokens",
}


def allowed(identity: Identity, permission: Permission) -> bool:
    return permission in GRANTS.get(identity.role, frozenset())


def require(identity: Identity, permission: Permission) -> None:
    """Raise ``PermissionDeniedError`` unless ``identity``'s role grants ``permission``."""
    if not allowed(identity, permission):
        holders = ", ".join(r.replace("_", " ") for r in ROLES if permission in GRANTS[r])
        raise PermissionDeniedError(
            f"Your role ({identity.role.replace('_', ' ')}) may not {DESCRIPTIONS[permission]}. "
            f"Ask an admin for a role that may ({holders}).",
            permission=permission.value,
        )


def cli_identity(tenant_id: int) -> Identity:
    """The command line acts as an admin without an account: whoever has a shell on the machine and
    the database URL already holds every key. The audit log names the operating-system user."""
    try:
        who = getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment and no passwd entry
        who = "unknown"
    return Identity(tenant_id=tenant_id, user_id=0, role=ADMIN, name=f"cli:{who}")
