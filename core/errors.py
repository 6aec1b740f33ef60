"""Errors a person can act on.

The tree, drawn once (callers catch ``WorkbenchError``)::

    WorkbenchError
    ├── ConfigurationError        settings missing or inconsistent
    ├── NotFoundError             a row that does not exist in this tenant
    ├── IngestError               an upload that cannot be ingested
    │   ├── NotAPdfError
    │   ├── EncryptedPdfError
    │   ├── CorruptPdfError
    │   ├── EmptyPdfError         scanned or text-less
    │   ├── FileTooLargeError
    │   └── DuplicateDocumentError  the same file is already in the manuscript
    ├── ContractError             an agent's output broke its JSON contract
    ├── ProviderError             a model provider failed or is unknown
    ├── PromptError               a prompt file is missing or malformed
    ├── BudgetExceededError       a call would take a stage or paragraph over its token budget
    ├── NoFactsError              a paragraph cannot be drafted without facts
    ├── ImmutableRecordError      an attempt to change a stored version
    └── JobError                  a job cannot be enqueued, cancelled or retried
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base of every error the workbench raises on purpose; its message says what to do."""


class ConfigurationError(WorkbenchError):
    pass


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
    pass


class ProviderError(WorkbenchError):
    pass


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
