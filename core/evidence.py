"""The evidence bundle ``incident freeze`` writes: the runs and logs of the incident's window, as stored.

One ``.tar.gz`` under ``settings.resolved_evidence_dir`` named ``incident-<id>-<UTC time>.tar.gz``:
one JSON or JSON-lines member per kind of record, and ``manifest.json`` with each member's sha256,
size and row count, the window and the key ids the sealed content needs. Every table is read in one
snapshot (``core.backup``'s), so the members agree with each other.

What goes in: the kill switch and breakers, control events, jobs of the window (or still queued or
running) with their transitions, usage events, trajectories and their spans, policy violations,
alert events, prompt deployments, routing versions, the audit entries of the window, and the
configuration with every secret replaced by whether it is set. Trace content goes in exactly as
stored: sealed (AES-256-GCM) beside its key id, never opened; whoever examines the bundle opens it
with the key ring, which is kept apart from it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr
from sqlalchemy import Connection, Engine, Select, Table, or_, select
from sqlalchemy.engine import make_url

from core.backup import consistent_snapshot
from core.db import as_utc
from core.errors import IncidentError
from core.models import (
    AlertEvent,
    AuditEntry,
    CircuitBreaker,
    ControlEvent,
    Job,
    JobTransition,
    KillSwitch,
    LlmUsageEvent,
    PolicyViolation,
    PromptDeployment,
    RoutingConfig,
    Trajectory,
    TrajectoryEvent,
    table_of,
)
from core.settings import Settings

FORMAT = "opusblocks-evidence/1"
"""The manifest's ``format``."""
MANIFEST = "manifest.json"
_URL_SETTINGS = ("database_url", "redis_url", "openai_base_url", "anthropic_base_url")


@dataclass(frozen=True)
class Bundle:
    """A written bundle: where, its sha256, and each member's row count."""

    path: Path
    sha256: str
    rows: dict[str, int]
    key_ids: list[str]


def _plain(value: Any) -> Any:
    """A column value as JSON: times in UTC ISO form, sealed bytes in base64 as stored."""
    if isinstance(value, datetime):
        return as_utc(value).isoformat(timespec="microseconds")
    if isinstance(value, bytes | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Decimal):
        return str(value)
    return value


def _rows(connection: Connection, query: Select[Any]) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row._mapping.items()} for row in connection.execute(query)]


def _jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row, sort_keys=True, default=str).encode() + b"\n" for row in rows)


def _safe_url(url: str) -> str:
    """A URL without its password (and without any user info for non-database URLs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database URL: a Redis or HTTP one
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def safe_config(settings: Settings) -> dict[str, Any]:
    """The settings as a reviewer needs them: each secret (a ``SecretStr``) replaced by whether it is set,
    URLs without passwords."""
    out: dict[str, Any] = {}
    for name, value in settings.model_dump(mode="json").items():
        if isinstance(getattr(settings, name), SecretStr) or _is_secret_field(name):
            out[name] = "(set)" if value else "(not set)"
        elif name in _URL_SETTINGS and isinstance(value, str):
            out[name] = _safe_url(value)
        else:
            out[name] = value
    out["resolved_database_url"] = _safe_url(settings.resolved_database_url)
    return out


def _is_secret_field(name: str) -> bool:
    field = Settings.model_fields.get(name)
    return field is not None and "SecretStr" in str(field.annotation)


def _in_window(table: Table, column: str, since: datetime) -> Select[Any]:
    return select(table).where(table.c[column] >= since)


def _members(connection: Connection, *, since: datetime) -> dict[str, list[dict[str, Any]]]:
    jobs_t, transitions_t = table_of(Job), table_of(JobTransition)
    traj_t, events_t = table_of(Trajectory), table_of(TrajectoryEvent)
    alerts_t = table_of(AlertEvent)
    jobs = _rows(
        connection,
        select(jobs_t)
        .where(
            or_(
                jobs_t.c.created_at >= since,
                jobs_t.c.finished_at >= since,
                jobs_t.c.state.in_(("QUEUED", "RUNNING")),
            )
        )
        .order_by(jobs_t.c.created_at, jobs_t.c.id),
    )
    job_ids = [row["id"] for row in jobs]
    trajectories = _rows(
        connection,
        select(traj_t)
        .where(or_(traj_t.c.started_at >= since, traj_t.c.ended_at >= since, traj_t.c.status == "running"))
        .order_by(traj_t.c.started_at),
    )
    trace_ids = [row["trace_id"] for row in trajectories]
    return {
        "kill_switch": _rows(connection, select(table_of(KillSwitch))),
        "circuit_breakers": _rows(connection, select(table_of(CircuitBreaker))),
        "control_events": _rows(connection, _in_window(table_of(ControlEvent), "at", since).order_by("id")),
        "jobs": jobs,
        "job_transitions": _rows(
            connection,
            select(transitions_t).where(transitions_t.c.job_id.in_(job_ids)).order_by(transitions_t.c.id),
        )
        if job_ids
        else [],
        "usage_events": _rows(connection, _in_window(table_of(LlmUsageEvent), "created_at", since).order_by("id")),
        "trajectories": trajectories,
        "trajectory_events": _rows(
            connection,
            select(events_t).where(events_t.c.trace_id.in_(trace_ids)).order_by(events_t.c.started_at, events_t.c.id),
        )
        if trace_ids
        else [],
        "policy_violations": _rows(
            connection, _in_window(table_of(PolicyViolation), "created_at", since).order_by("id")
        ),
        "alert_events": _rows(
            connection,
            select(alerts_t).where(or_(alerts_t.c.fired_at >= since, alerts_t.c.state == "firing")).order_by("id"),
        ),
        "prompt_deployments": _rows(connection, select(table_of(PromptDeployment)).order_by("id")),
        "routing_versions": _rows(connection, select(table_of(RoutingConfig)).order_by("tenant_id", "version")),
        "audit_log": _rows(connection, _in_window(table_of(AuditEntry), "at", since).order_by("seq")),
    }


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o600
    tar.addfile(info, fileobj=io.BytesIO(data))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_bundle(engine: Engine, *, incident_id: int, since: datetime, reason: str, settings: Settings) -> Bundle:
    """Write incident ``incident_id``'s bundle of everything since ``since``; returns its path and sha256.

    Raises ``IncidentError`` when the evidence folder cannot be written (generation stays frozen)."""
    folder = settings.resolved_evidence_dir
    now = datetime.now(UTC)
    target = folder / f"incident-{incident_id}-{now:%Y%m%dT%H%M%SZ}.tar.gz"
    partial = target.with_name(target.name + ".partial")
    with consistent_snapshot(engine) as connection:
        members = _members(connection, since=since)
    key_ids = sorted({str(r["key_id"]) for r in members["trajectory_events"] if r.get("key_id") and r.get("content")})
    files = {f"{name}.jsonl": _jsonl(rows) for name, rows in members.items()}
    files["config.json"] = json.dumps(safe_config(settings), indent=1, sort_keys=True, default=str).encode()
    manifest = {
        "format": FORMAT,
        "incident_id": incident_id,
        "reason": reason,
        "created_at": now.isoformat(timespec="seconds"),
        "window": {"since": as_utc(since).isoformat(timespec="seconds"), "until": now.isoformat(timespec="seconds")},
        "sealed_content": "trace content is as stored: AES-256-GCM, opened only with the key ring (key_ids)",
        "key_ids": key_ids,
        "members": {
            name: {
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "rows": len(members[name.removesuffix(".jsonl")]) if name.endswith(".jsonl") else None,
            }
            for name, data in sorted(files.items())
        },
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(partial, "w:gz") as tar:
            for name, data in sorted(files.items()):
                _add(tar, name, data, int(now.timestamp()))
            _add(tar, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode(), int(now.timestamp()))
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise IncidentError(
            f"The evidence bundle could not be written to {folder} ({error.strerror or error}); generation stays "
            "frozen. Free space or set WORKBENCH_EVIDENCE_DIR to a writable folder."
        ) from error
    return Bundle(target, _sha256(target), {name: len(rows) for name, rows in members.items()}, key_ids)


def read_bundle(path: Path) -> dict[str, bytes]:
    """Every member of a bundle by name (for checks and tests)."""
    with tarfile.open(path, "r:gz") as tar:
        out = {}
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            if handle is not None:
                out[member.name] = handle.read()
        return out


def check_bundle(path: Path) -> list[str]:
    """Problems found when each member is compared with the manifest's sha256 (empty when it holds)."""
    members = read_bundle(path)
    manifest = json.loads(members.pop(MANIFEST))
    problems = [f"{name} is missing" for name in manifest["members"] if name not in members]
    for name, data in members.items():
        expected = manifest["members"].get(name)
        if expected is None:
            problems.append(f"{name} is not in the manifest")
        elif hashlib.sha256(data).hexdigest() != expected["sha256"]:
            problems.append(f"{name} does not match its sha256")
    return problems
