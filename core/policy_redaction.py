"""PII redaction for one agent call: e-mail addresses and phone numbers to stable placeholders
(``[EMAIL_1]``, ``[PHONE_1]``) on the way out, and back on the way in (``core.policy``)."""

from __future__ import annotations

import re

from core import policy_rules as rules

_PLACEHOLDER = re.compile(r"\[(?:EMAIL|PHONE)_\d+\]")


class Redactor:
    """E-mail addresses and phone numbers to stable placeholders and back, for one agent call."""

    def __init__(self) -> None:
        self._token_of: dict[str, str] = {}
        self._value_of: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def redact(self, text: str) -> str:
        found = list(rules.find_pii(text))
        if not found:
            return text
        parts, position = [], 0
        for rule, start, end in found:
            parts += [text[position:start], self._token(rule, text[start:end])]
            position = end
        parts.append(text[position:])
        return "".join(parts)

    def _token(self, rule: str, value: str) -> str:
        token = self._token_of.get(value)
        if token is None:
            kind = "EMAIL" if rule == rules.PII_EMAIL else "PHONE"
            self.counts[rule] = self.counts.get(rule, 0) + 1
            token = f"[{kind}_{self.counts[rule]}]"
            self._token_of[value], self._value_of[token] = token, value
        return token

    def restore(self, text: str) -> str:
        if not self._value_of or "[" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self._value_of.get(m.group(0), m.group(0)), text)

    @property
    def active(self) -> bool:
        return bool(self._value_of)
