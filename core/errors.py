"""Errors a person can act on.

The tree, drawn once (callers catch ``WorkbenchError``)::

    WorkbenchError
    ├── ConfigurationError        settings missing or inconsistent
    │   └── StartupRefusedError   staging or production refuses to start (``core.environments``)
    ├── NotFoundError             a row that does not exist in this tenant
    ├── IngestError               an upload that cannot be ingested
    │   ├── NotAPdfError
    │   ├── EncryptedPdfError
    │   ├── CorruptPdfError
    │   ├── EmptyPdfError         scanned or text-less
    │   ├── FileTooLargeError
    │   └── DuplicateDocumentError  the same file is already in the manuscript
    ├── ContractError             an agent's output broke its JSON contract
    ├── ProviderError             a model provider failed or is unknown (``failure_class`` names how)
    │   ├── ProviderTimeoutError      no answer within the timeout          (timeout: retried)
    │   ├── RateLimitedError          HTTP 429, ``retry_after`` seconds      (rate_limit: backoff)
    │   ├── ProviderUnavailableError  5xx or the connection failed          (server_error: retried)
    │   ├── InvalidJsonError          the answer is not JSON                (invalid_json: retried once)
    │   └── ProviderRejectedError     4xx: key, model or request refused    (rejected: never retried)
    ├── GenerationPausedError     the kill switch is engaged or a circuit breaker is open
    ├── PromptError               a prompt file is missing or malformed
    ├── BudgetExceededError       a call would take a stage or paragraph over its token budget
    ├── NoFactsError              a paragraph cannot be drafted without facts
    ├── ImmutableRecordError      an attempt to change a stored version
    ├── JobError                  a job cannot be enqueued, cancelled or retried
    ├── AlertRuleError            an alert rule setting out of range or unknown
    ├── RoutingConfigError        a routing configuration that cannot be saved or read
    ├── FalseSupportError         a sentence that cannot be reported as a false support
    ├── ReleaseGateError          a prompt version without a passing golden run of that exact file
    ├── DeploymentError           a prompt deployment step that does not fit the current state
    ├── PermissionDeniedError     the signed-in role may not do this (``permission`` names what)
    ├── AuthenticationError       signing in failed
    │   ├── InvalidCredentialsError   unknown e-mail or wrong password (never says which)
    │   ├── AccountLockedError        too many failures: locked until ``until``
    │   └── SessionExpiredError       the session ended (expired, idle too long, signed out)
    ├── AccountError              a user or tenant that cannot be created or changed
    ├── AuditChainError           the audit log cannot be appended to or read
    ├── PolicyBlockedError        an agent's output broke a severe policy rule and was withheld
    ├── ModelRetiredError         a call or route to a model that is retired or not registered
    ├── ModelRegistryError        a registry entry that cannot be saved
    ├── BackupError               a backup that cannot be written or restored (newer schema, not empty)
    ├── GoldenSetError            a golden case file that does not validate, or a golden run that cannot start
    ├── ReplayError               a trace that cannot be replayed (no agent calls, unopenable content, a foreign model)
    └── IncidentError             an incident or drill step that does not fit the state (already frozen, nothing frozen)
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base of every error the workbench raises on purpose; its message says what to do."""


class ConfigurationError(WorkbenchError):
    pass


class StartupRefusedError(ConfigurationError):
    """The environment's profile refuses to start (development key, schema behind head, unpinned prompt);
    the message lists every problem and its fix."""


class NotFoundError(WorkbenchError):
    pass


class IngestError(WorkbenchError):
    pass


class NotAPdfError(IngestError):
    pass


class EncryptedPdfError(IngestError):
    pass


class CorruptPdfError(IngestError):
    pass


class EmptyPdfError(IngestError):
    pass


class FileTooLargeError(IngestError):
    pass


class DuplicateDocumentError(IngestError):
    """The same bytes (sha256) are already a document of this manuscript; ``document_id`` names it."""

    def __init__(self, message: str, document_id: int | None = None) -> None:
        super().__init__(message)
        self.document_id = document_id


class ContractError(WorkbenchError):
    failure_class = "contract"


class ProviderError(WorkbenchError):
    """A provider call failed. ``failure_class`` picks the retry rule (``core.retry``); tokens a
    failed attempt was still billed for (an answer that was not JSON, say) ride along so they are
    counted."""

    failure_class = "provider"

    def __init__(self, message: str, *, input_tokens: int = 0, output_tokens: int = 0) -> None:
        super().__init__(message)
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens


class ProviderTimeoutError(ProviderError):
    failure_class = "timeout"


class RateLimitedError(ProviderError):
    failure_class = "rate_limit"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderUnavailableError(ProviderError):
    failure_class = "server_error"


class InvalidJsonError(ProviderError):
    failure_class = "invalid_json"


class ProviderRejectedError(ProviderError):
    failure_class = "rejected"


class GenerationPausedError(WorkbenchError):
    """Generation is frozen (kill switch) or a circuit breaker is open; stored work stays readable."""


class PromptError(WorkbenchError):
    pass


class BudgetExceededError(WorkbenchError):
    pass


class NoFactsError(WorkbenchError):
    pass


class ImmutableRecordError(WorkbenchError):
    pass


class JobError(WorkbenchError):
    pass


class AlertRuleError(WorkbenchError):
    """An alert rule setting that cannot be saved: unknown rule or parameter, value out of range."""


class BudgetConfigError(WorkbenchError):
    """A token budget that cannot be saved (not a whole number, out of bounds); names the budget."""


class FalseSupportError(WorkbenchError):
    """A sentence that cannot be reported as a false support (not shown as supported, reported already)."""


class RoutingConfigError(WorkbenchError):
    """A routing configuration that cannot be saved (bad threshold, model name, agent or tier) or read."""


class ReleaseGateError(WorkbenchError):
    """A prompt version may serve only after a passing golden run of that exact file (``core.deployments``)."""


class DeploymentError(WorkbenchError):
    """A deployment step that does not fit the current state (no canary to promote, a version already active)."""


class PermissionDeniedError(WorkbenchError):
    """The signed-in user's role does not grant ``permission``."""

    def __init__(self, message: str, *, permission: str = "") -> None:
        super().__init__(message)
        self.permission = permission


class AuthenticationError(WorkbenchError):
    pass


class InvalidCredentialsError(AuthenticationError):
    pass


class AccountLockedError(AuthenticationError):
    def __init__(self, message: str, *, until: object = None) -> None:
        super().__init__(message)
        self.until = until


class SessionExpiredError(AuthenticationError):
    pass


class AccountError(WorkbenchError):
    """A user or tenant that cannot be created or changed (duplicate e-mail, weak password, last admin)."""


class AuditChainError(WorkbenchError):
    pass


class PolicyBlockedError(WorkbenchError):
    """An agent's output broke a severe policy rule; it was not used. ``rules`` names them."""

    def __init__(self, message: str, *, rules: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.rules = rules


class ModelRetiredError(WorkbenchError):
    """A model that is retired or missing from the registry: no call goes to it."""


class ModelRegistryError(WorkbenchError):
    pass


class BackupError(WorkbenchError):
    pass


class GoldenSetError(WorkbenchError):
    """A golden case file that does not validate (the message names the file and field), or a golden
    run that cannot start (unknown agent, prompt version or model)."""


class ReplayError(WorkbenchError):
    """A trace that cannot be replayed: it made no agent calls, its content cannot be opened, or a pin names
    a model the configured provider does not serve."""


class IncidentError(WorkbenchError):
    """An incident or drill step that does not fit the current state: a freeze while one is frozen, a thaw
    with nothing frozen, a drill while the kill switch is engaged, a bundle that cannot be written."""
