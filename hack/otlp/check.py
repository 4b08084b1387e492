#!/usr/bin/env python3
"""Offline OTLP profiles conformance checker.

Usage: check.py [--json] [--max-violations N] FILE [FILE...]

Each FILE holds one serialized ExportProfilesServiceRequest (binary protobuf, gunzipped
first when it starts with the gzip magic). For each file the checker prints its
violations (see conformance.py) and a one-line summary; with --json one JSON object per
file and line: {"file": ..., "violations": [...], "summary": {...}} or, when the file
cannot be decoded, {"file": ..., "error": "..."}.

Exit status: 0 when no file has violations, 1 when some file has violations, 2 when some
file cannot be read or decoded (2 wins over 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional, Sequence

import conformance

# Largest (decompressed) request accepted; far above the 64 MiB a collector recommends.
MAX_REQUEST_BYTES = 1 << 30

EXIT_OK, EXIT_VIOLATIONS, EXIT_UNREADABLE = 0, 1, 2


class Unreadable(Exception):
    """The file cannot be read or does not hold an ExportProfilesServiceRequest."""


def load(path: str) -> Any:
    """Reads and decodes one request file; raises Unreadable with a clear reason."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_REQUEST_BYTES + 1)
    except OSError as error:
        raise Unreadable(f"cannot read: {error.strerror or error}") from None
    if len(data) > MAX_REQUEST_BYTES:
        raise Unreadable(f"larger than {MAX_REQUEST_BYTES} bytes")
    if not data:
        raise Unreadable("file is empty")
    if data.startswith(conformance.GZIP_MAGIC):
        try:
            data = conformance.gunzip(data, MAX_REQUEST_BYTES)
        except ValueError as error:
            raise Unreadable(str(error)) from None
    try:
        request = conformance.decode_request(data)
    except ValueError as error:
        raise Unreadable(str(error)) from None
    if conformance.looks_like_garbage(data, request):
        raise Unreadable("not an ExportProfilesServiceRequest (no known fields, only unknown ones)")
    return request


def summary_line(summary: dict[str, Any]) -> str:
    """One human-readable line for a summary()."""
    top = ", ".join(f"{name} ({weight})" for name, weight in summary["top_functions"][:3])
    return (
        f"{summary['resource_profiles']} resource_profiles, {summary['profiles']} profiles, "
        f"{summary['samples']} samples, weight {summary['total_weight']}" + (f"; top: {top}" if top else "")
    )


def check_file(path: str, as_json: bool, max_violations: int) -> int:
    """Checks one file, prints the result, returns its exit status."""
    try:
        request = load(path)
    except Unreadable as error:
        if as_json:
            print(json.dumps({"file": path, "error": str(error)}))
        print(f"check: {path}: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    violations = conformance.check(request, max_violations)
    summary = conformance.summarize(request)
    if as_json:
        print(json.dumps({"file": path, "violations": violations, "summary": summary}))
    else:
        for violation in violations:
            print(f"{path}: {violation}")
        verdict = "conforms" if not violations else f"{len(violations)} violations"
        print(f"{path}: {verdict}; {summary_line(summary)}")
    return EXIT_VIOLATIONS if violations else EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description="Check OTLP profiles export requests against the spec rules.")
    parser.add_argument("files", metavar="FILE", nargs="+", help="serialized ExportProfilesServiceRequest (maybe gzip)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file and line")
    parser.add_argument(
        "--max-violations",
        type=int,
        default=conformance.DEFAULT_MAX_VIOLATIONS,
        help=f"violations listed per file (default {conformance.DEFAULT_MAX_VIOLATIONS})",
    )
    args = parser.parse_args(argv)
    status = EXIT_OK
    for path in args.files:
        status = max(status, check_file(path, args.json, args.max_violations))
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
