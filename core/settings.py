"""Settings from the environment: one class, built lazily, secrets as ``SecretStr``.

Nothing here connects to anything; ``get_settings()`` only reads variables.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob of the workbench. Environment variable names are the field names, upper-cased."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    environment: Literal["local", "staging", "production"] = Field(
        default="local",
        validation_alias="WORKBENCH_ENV",
        description="Settings profile: local (the embedded default, forgiving), staging or production, which "
        "refuse to start on a development encryption key, a schema behind head or an unpinned prompt "
        "(core/environments.py has the table).",
    )
    data_dir: Path = Field(
        default=PROJECT_ROOT / "data",
        validation_alias="WORKBENCH_DATA_DIR",
        description="Where the SQLite file and the content-addressed PDF store live.",
    )
    prompts_dir: Path = Field(
        default=PROJECT_ROOT / "prompts",
        validation_alias="WORKBENCH_PROMPTS_DIR",
        description="Prompt files and their lock file (prompts/<agent>/<version>.md, prompts.lock.json).",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias="DATABASE_URL",
        description="SQLAlchemy URL; unset means a SQLite file under data_dir.",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias="REDIS_URL",
        description="Redis for RQ workers; unset means jobs run in-process.",
    )
    provider: str = Field(
        default="local",
        validation_alias="WORKBENCH_PROVIDER",
        description="Provider for every agent: local (offline), openai or anthropic.",
    )
    provider_plugins: str = Field(
        default="",
        validation_alias="WORKBENCH_PROVIDER_PLUGINS",
        description="Comma-separated modules that register further providers when imported.",
    )
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    anthropic_api_key: SecretStr | None = Field(default=None, validation_alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(default=None, validation_alias="ANTHROPIC_BASE_URL")
    openai_model: str = Field(
        default="gpt-4.1-mini", validation_alias="OPENAI_MODEL", description="Model the openai provider uses."
    )
    anthropic_model: str = Field(
        default="claude-haiku-4-5",
        validation_alias="ANTHROPIC_MODEL",
        description="Model the anthropic provider uses.",
    )
    model_overrides: dict[str, str] = Field(
        default_factory=dict,
        validation_alias="WORKBENCH_MODELS",
        description='JSON: model per agent or prompt profile, e.g. {"verifier": "gpt-4o", "drafting": "gpt-4.1"}.',
    )
    provider_timeout_s: float = Field(
        default=60.0,
        validation_alias="WORKBENCH_PROVIDER_TIMEOUT_S",
        description="Seconds one provider attempt may take before it counts as a timeout.",
    )
    local_latency_ms: float = Field(
        default=0.0,
        ge=0,
        validation_alias="WORKBENCH_LOCAL_LATENCY_MS",
        description="Sleep per local-provider call, ms: simulates a remote model for benchmarks.",
    )
    retry_max_delay_s: float = Field(
        default=30.0,
        validation_alias="WORKBENCH_RETRY_MAX_DELAY_S",
        description="Longest wait between two attempts, Retry-After included, seconds.",
    )
    pricing_overrides: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        validation_alias="WORKBENCH_PRICING",
        description='JSON: USD per million tokens by model, e.g. {"my-model": {"input": 0.2, "output": 0.8, '
        '"cached_input": 0.05}}; wins over the built-in table.',
    )

    job_workers: int = Field(
        default=2,
        validation_alias="WORKBENCH_JOB_THREADS",
        description="Jobs run at once by the in-process executor (embedded default, no REDIS_URL).",
    )
    job_heartbeat_s: float = Field(
        default=2.0, validation_alias="JOB_HEARTBEAT_S", description="How often a running job says it is alive, s."
    )
    job_stale_after_s: float = Field(
        default=30.0,
        validation_alias="JOB_STALE_AFTER_S",
        description="A running job silent this long is taken as dead (its worker was killed), s.",
    )
    job_max_attempts: int = Field(
        default=2,
        validation_alias="JOB_MAX_ATTEMPTS",
        description="Runs a job gets when its worker dies under it: it is queued again until this, then FAILED.",
    )
    job_timeout_s: int = Field(
        default=1800, validation_alias="JOB_TIMEOUT_S", description="Longest a job may run on an RQ worker, s."
    )

    breaker_window_s: int = Field(
        default=300, validation_alias="BREAKER_WINDOW_S", description="Window breakers count failures over, s."
    )
    breaker_min_calls: int = Field(
        default=6, validation_alias="BREAKER_MIN_CALLS", description="Attempts in the window before a rate counts."
    )
    breaker_failure_rate: float = Field(
        default=0.5, validation_alias="BREAKER_FAILURE_RATE", description="Provider failure share that opens it."
    )
    breaker_min_sentences: int = Field(
        default=20, validation_alias="BREAKER_MIN_SENTENCES", description="Verdicts in the window before it counts."
    )
    breaker_unsupported_rate: float = Field(
        default=0.8,
        validation_alias="BREAKER_UNSUPPORTED_RATE",
        description="Share of final unsupported verdicts that opens the verification breaker.",
    )
    breaker_paragraph_cost_usd: float = Field(
        default=1.0,
        validation_alias="BREAKER_PARAGRAPH_COST_USD",
        description="A paragraph run costing more than this opens the cost breaker, USD.",
    )
    breaker_cooldown_s: int = Field(
        default=60, validation_alias="BREAKER_COOLDOWN_S", description="Open time before a half-open probe, s."
    )

    encryption_keys: SecretStr | None = Field(
        default=None,
        validation_alias="WORKBENCH_ENCRYPTION_KEYS",
        description="Key ring for trace content: comma-separated id:base64(32 bytes), the active key first. "
        "Unset means a development key generated under data_dir (a warning shows on every page).",
    )
    alert_interval_s: float = Field(
        default=60.0,
        validation_alias="WORKBENCH_ALERT_INTERVAL_S",
        description="How often workers evaluate the alert rules, s.",
    )
    canary_min_paragraphs: int = Field(
        default=20,
        ge=1,
        validation_alias="WORKBENCH_CANARY_MIN_PARAGRAPHS",
        description="Paragraphs the canary and the baseline each need before their pass rates are compared "
        "(a false support rolls a canary back at once, whatever the count).",
    )
    canary_pass_rate_margin: float = Field(
        default=0.1,
        ge=0,
        le=1,
        validation_alias="WORKBENCH_CANARY_PASS_RATE_MARGIN",
        description="A canary whose pass rate (share of verified paragraphs) is below the baseline's by more "
        "than this is rolled back automatically; within it, the canary may be promoted.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias="WORKBENCH_OTLP_ENDPOINT",
        description="OTLP/HTTP traces endpoint (e.g. http://localhost:4318/v1/traces); unset means no export.",
    )
    otlp_include_content: bool = Field(
        default=False,
        validation_alias="WORKBENCH_OTLP_INCLUDE_CONTENT",
        description="Send prompts and outputs with exported spans (decrypted). Off: metadata only.",
    )

    max_upload_mb: int = Field(
        default=50, validation_alias="WORKBENCH_MAX_UPLOAD_MB", description="Largest PDF accepted, MiB."
    )
    chunk_tokens: int = Field(
        default=350, validation_alias="WORKBENCH_CHUNK_TOKENS", description="Target tokens per chunk."
    )
    rewrite_rounds: int = Field(
        default=2,
        validation_alias="WORKBENCH_REWRITE_ROUNDS",
        description="Rewriter rounds per failed sentence before it is marked for review.",
    )
    writer_top_k: int = Field(
        default=6, validation_alias="WORKBENCH_WRITER_TOP_K", description="Facts the Writer retrieves."
    )

    session_ttl_s: int = Field(
        default=12 * 3600,
        gt=0,
        validation_alias="WORKBENCH_SESSION_TTL_S",
        description="A sign-in lasts at most this long, seconds, however active the user is.",
    )
    session_idle_s: int = Field(
        default=3600,
        gt=0,
        validation_alias="WORKBENCH_SESSION_IDLE_S",
        description="A sign-in ends after this long without a page load, seconds.",
    )
    login_max_failures: int = Field(
        default=5,
        gt=0,
        validation_alias="WORKBENCH_LOGIN_MAX_FAILURES",
        description="Consecutive failed logins of one e-mail before it is locked.",
    )
    login_lockout_s: int = Field(
        default=900,
        gt=0,
        validation_alias="WORKBENCH_LOGIN_LOCKOUT_S",
        description="How long a locked login stays locked, seconds.",
    )
    login_delay_s: float = Field(
        default=0.5,
        ge=0,
        validation_alias="WORKBENCH_LOGIN_DELAY_S",
        description="Wait after a failed login, seconds, doubling with each further failure (capped at 8 s).",
    )

    evidence_dir: Path | None = Field(
        default=None,
        validation_alias="WORKBENCH_EVIDENCE_DIR",
        description="Where `incident freeze` writes evidence bundles; unset means data_dir/evidence.",
    )
    release_backup_max_age_h: float = Field(
        default=24.0,
        gt=0,
        validation_alias="WORKBENCH_RELEASE_BACKUP_MAX_AGE_H",
        description="The release check's rollback plan needs a backup (`python -m core backup`) this recent, hours.",
    )
    drill_max_age_days: float = Field(
        default=30.0,
        gt=0,
        validation_alias="WORKBENCH_DRILL_MAX_AGE_DAYS",
        description="The go-live criterion 'kill switch tested' needs a passing kill-switch drill this recent, days.",
    )

    api_summary_ttl_s: float = Field(
        default=30.0,
        ge=0,
        validation_alias="WORKBENCH_API_SUMMARY_TTL_S",
        description="Seconds the API keeps a cost summary per tenant and window (0: computed every time).",
    )

    budget_librarian_chunk_tokens: int = Field(default=4_000, validation_alias="BUDGET_LIBRARIAN_CHUNK_TOKENS")
    budget_writer_tokens: int = Field(default=8_000, validation_alias="BUDGET_WRITER_TOKENS")
    budget_verifier_tokens: int = Field(default=4_000, validation_alias="BUDGET_VERIFIER_TOKENS")
    budget_rewriter_tokens: int = Field(default=4_000, validation_alias="BUDGET_REWRITER_TOKENS")
    budget_paragraph_tokens: int = Field(default=60_000, validation_alias="BUDGET_PARAGRAPH_TOKENS")

    @field_validator("provider")
    @classmethod
    def _provider_name(cls, value: str) -> str:
        # Which names exist is the provider registry's business (core.providers.get_provider says so).
        return value.strip().lower()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'workbench.db'}"

    @property
    def resolved_evidence_dir(self) -> Path:
        return self.evidence_dir or self.data_dir / "evidence"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
