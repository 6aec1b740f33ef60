"""The checked-in OpenAPI document: ``python -m api.openapi`` writes ``docs/openapi.json`` from the app;
``python -m api.openapi --check`` exits 1 when the file differs from what the app serves (CI and
``tests/test_api_schema.py`` catch a route changed without regenerating it)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from api.app import create_app

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
"""Where the document is checked in."""


def render() -> str:
    """The served document as the file holds it: sorted keys, indent 2, a final newline."""
    return json.dumps(create_app().openapi(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.openapi", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/openapi.json is out of date")
    args = parser.parse_args(argv)
    wanted = render()
    if args.check:
        current = DOCUMENT.read_text(encoding="utf-8") if DOCUMENT.exists() else ""
        if current != wanted:
            print(f"{DOCUMENT} is out of date with the app's routes: run `python -m api.openapi`.", file=sys.stderr)
            return 1
        print(f"{DOCUMENT} is up to date.")
        return 0
    DOCUMENT.write_text(wanted, encoding="utf-8")
    print(f"Wrote {DOCUMENT}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
