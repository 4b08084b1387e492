#!/usr/bin/env python3
"""An OTLP profiles receiver for tests: gRPC + HTTP ingest, a conformance check of every
request, fault injection and a JSON control API.

Usage:
  receiver.py --grpc-port N --http-port N --control-port N [--host 127.0.0.1]
              [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
              [--max-request-bytes N] [--max-records N] [--log-level LEVEL]

Port 0 picks a free port. Once every server listens, exactly one JSON line goes to stdout:
{"grpc_port": ..., "http_port": ..., "control_port": ...}. Logs go to stderr. SIGTERM and
SIGINT exit at once.

Ingest:
- gRPC `opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export`,
  identity or gzip message compression.
- HTTP `POST /v1development/profiles`, `Content-Type: application/x-protobuf`, optional
  `Content-Encoding: gzip`, Content-Length or chunked bodies.
- `--tls-cert`/`--tls-key` serve both over TLS; `--tls-client-ca` also requires client
  certificates signed by that CA (mTLS).

Every request is decoded, checked with conformance.check(), summarized with
conformance.summarize() and recorded (the last --max-records, default 10,000). The
control API (plain HTTP on the control port) lists records, queues faults, takes ingest
down and up; see README.md.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import logging
import math
import os
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from collections import deque
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import grpc
from google.protobuf import any_pb2, duration_pb2
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2

import conformance

SERVICE_NAME = profiles_service_pb2.DESCRIPTOR.services_by_name["ProfilesService"].full_name
GRPC_METHOD = f"/{SERVICE_NAME}/Export"
HTTP_PATH = "/v1development/profiles"
PROTOBUF = "application/x-protobuf"

DEFAULT_MAX_REQUEST_BYTES = 128 << 20
DEFAULT_MAX_RECORDS = 10_000
MAX_CONTROL_BODY = 1 << 20
MAX_DELAY_SECONDS = 3600.0
MAX_PENDING_FAULTS = 10_000
GRPC_WORKERS = 32
# Sockets idle longer than this are closed (seconds).
CONNECTION_TIMEOUT = 120

# grpc-status-details-bin carries a google.rpc.Status; RetryInfo is one of its details.
RETRY_INFO_TYPE_URL = "type.googleapis.com/google.rpc.RetryInfo"
GRPC_CODES = {code.name: code for code in grpc.StatusCode if code is not grpc.StatusCode.OK}
# google.rpc.Code put in the Status body of an HTTP error response.
HTTP_TO_RPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 408: 4, 411: 3, 413: 8, 415: 3, 429: 14,
                    500: 13, 501: 12, 502: 14, 503: 14, 504: 4}

log = logging.getLogger("receiver")


# ---------------------------------------------------------------------------------------
# google.rpc.Status, hand-encoded (three fields; no googleapis-common-protos needed)


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int32 values are sign-extended to 10 bytes
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def encode_rpc_status(code: int, message: str, retry_delay_seconds: Optional[float] = None) -> bytes:
    """Serializes google.rpc.Status{code=1, message=2, details=3}, optionally with one
    Any(google.rpc.RetryInfo{retry_delay=1: Duration}) detail."""
    out = bytearray()
    if code:
        out += _varint(1 << 3 | 0) + _varint(code)
    if message:
        out += _length_delimited(2, message.encode("utf-8", "replace"))
    if retry_delay_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(retry_delay_seconds * 1e9))
        retry_info = _length_delimited(1, delay.SerializeToString())
        detail = any_pb2.Any(type_url=RETRY_INFO_TYPE_URL, value=retry_info)
        out += _length_delimited(3, detail.SerializeToString())
    return bytes(out)


# ---------------------------------------------------------------------------------------
# Faults


@dataclass
class Fault:
    """One queued fault; see parse_fault() for the JSON form."""

    protocol: str  # "grpc", "http" or "any"
    spec: dict[str, Any]  # the JSON it was parsed from (recorded with the request)
    grpc_status: Optional[grpc.StatusCode] = None
    message: str = ""
    retry_delay_seconds: Optional[float] = None
    http_status: Optional[int] = None
    retry_after: Optional[str] = None
    body: Optional[str] = None
    rejected_profiles: Optional[int] = None
    error_message: str = ""
    delay_seconds: float = 0.0

    def matches(self, protocol: str) -> bool:
        return self.protocol in ("any", protocol)


_FAULT_KEYS = {
    "protocol", "grpc_status", "message", "retry_delay_seconds", "http_status", "retry_after", "body",
    "partial_success", "delay_seconds",
}


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number of seconds")
    if not 0 <= value <= MAX_DELAY_SECONDS:
        raise ValueError(f"{name} must be within [0, {MAX_DELAY_SECONDS:g}]")
    return float(value)


def parse_fault(spec: Any) -> Fault:
    """Validates one fault object from POST /faults; raises ValueError explaining what is wrong.

    Kinds (combinable where it makes sense):
      {"grpc_status": "UNAVAILABLE", "message": "...", "retry_delay_seconds": 2.5}
      {"http_status": 503, "retry_after": "3", "body": "...", "message": "..."}
      {"partial_success": {"rejected_profiles": 5, "error_message": "..."}}
      {"delay_seconds": 5}
    plus "protocol": "grpc" | "http" | "any". The default is the protocol the fault has an
    answer for: grpc for grpc_status alone, http for http_status alone, any otherwise.
    """
    if not isinstance(spec, dict):
        raise ValueError("a fault must be a JSON object")
    unknown = sorted(set(spec) - _FAULT_KEYS)
    if unknown:
        raise ValueError(f"unknown fault keys {unknown}; known: {sorted(_FAULT_KEYS)}")
    fault = Fault(protocol="any", spec=spec)

    if "grpc_status" in spec:
        name = spec["grpc_status"]
        if not isinstance(name, str) or name.upper() not in GRPC_CODES:
            raise ValueError(f"grpc_status must be one of {sorted(GRPC_CODES)}")
        fault.grpc_status = GRPC_CODES[name.upper()]
    if "message" in spec:
        if not isinstance(spec["message"], str):
            raise ValueError("message must be a string")
        fault.message = spec["message"]
    if "retry_delay_seconds" in spec:
        if fault.grpc_status is None:
            raise ValueError("retry_delay_seconds needs grpc_status")
        fault.retry_delay_seconds = _seconds(spec["retry_delay_seconds"], "retry_delay_seconds")

    if "http_status" in spec:
        status = spec["http_status"]
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError("http_status must be an integer in [400, 599]")
        fault.http_status = status
    if "retry_after" in spec:
        if fault.http_status is None:
            raise ValueError("retry_after needs http_status")
        value = spec["retry_after"]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value or len(value) > 200 or any(c in value for c in "\r\n\0"):
            raise ValueError("retry_after must be a header value: seconds or an HTTP-date")
        fault.retry_after = value
    if "body" in spec:
        if fault.http_status is None:
            raise ValueError("body needs http_status")
        if not isinstance(spec["body"], str):
            raise ValueError("body must be a string")
        fault.body = spec["body"]

    if "partial_success" in spec:
        partial = spec["partial_success"]
        if fault.grpc_status is not None or fault.http_status is not None:
            raise ValueError("partial_success cannot be combined with grpc_status or http_status")
        if not isinstance(partial, dict) or set(partial) - {"rejected_profiles", "error_message"}:
            raise ValueError('partial_success must be {"rejected_profiles": N, "error_message": "..."}')
        rejected = partial.get("rejected_profiles", 0)
        if isinstance(rejected, bool) or not isinstance(rejected, int) or not 0 <= rejected < 1 << 63:
            raise ValueError("partial_success.rejected_profiles must be a non-negative integer")
        message = partial.get("error_message", "")
        if not isinstance(message, str):
            raise ValueError("partial_success.error_message must be a string")
        fault.rejected_profiles, fault.error_message = rejected, message

    if "delay_seconds" in spec:
        fault.delay_seconds = _seconds(spec["delay_seconds"], "delay_seconds")

    if fault.grpc_status is None and fault.http_status is None and fault.rejected_profiles is None and "delay_seconds" not in spec:
        raise ValueError("a fault needs grpc_status, http_status, partial_success or delay_seconds")

    if "protocol" in spec:
        if spec["protocol"] not in ("grpc", "http", "any"):
            raise ValueError('protocol must be "grpc", "http" or "any"')
        fault.protocol = spec["protocol"]
    elif fault.grpc_status is not None and fault.http_status is None:
        fault.protocol = "grpc"
    elif fault.http_status is not None and fault.grpc_status is None:
        fault.protocol = "http"
    if fault.protocol in ("grpc", "any") and fault.http_status is not None and fault.grpc_status is None:
        raise ValueError("an http_status fault applies to http only (give grpc_status too for any)")
    if fault.protocol in ("http", "any") and fault.grpc_status is not None and fault.http_status is None:
        raise ValueError("a grpc_status fault applies to grpc only (give http_status too for any)")
    return fault


# ---------------------------------------------------------------------------------------
# Records and faults


class Store:
    """Thread-safe request records (bounded), the fault FIFO and the last request's bytes."""

    def __init__(self, max_records: int) -> None:
        self._lock = threading.Lock()
        self._records: deque[dict[str, Any]] = deque(maxlen=max(1, max_records))
        self._next_index = 0
        self._faults: list[Fault] = []
        self._last_request: Optional[tuple[int, bytes]] = None

    def add_record(self, record: dict[str, Any], message: Optional[bytes]) -> int:
        """Appends a record (its "index" is set here) and remembers `message` as the last request."""
        with self._lock:
            record["index"] = index = self._next_index
            self._next_index += 1
            self._records.append(record)
            if message is not None:
                self._last_request = (index, message)
            return index

    def records(self, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [record for record in self._records if record["index"] >= since]

    def last_request(self) -> Optional[tuple[int, bytes]]:
        with self._lock:
            return self._last_request

    def add_faults(self, faults: list[Fault]) -> int:
        with self._lock:
            if len(self._faults) + len(faults) > MAX_PENDING_FAULTS:
                raise ValueError(f"at most {MAX_PENDING_FAULTS} faults may be pending")
            self._faults.extend(faults)
            return len(self._faults)

    def take_fault(self, protocol: str) -> Optional[Fault]:
        """Removes and returns the first pending fault that applies to `protocol`."""
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.matches(protocol):
                    return self._faults.pop(i)
            return None

    def pending_faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(fault.spec, protocol=fault.protocol) for fault in self._faults]

    def counts(self) -> tuple[int, int]:
        """(requests recorded since the last reset, pending faults)."""
        with self._lock:
            return self._next_index, len(self._faults)

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._faults.clear()
            self._next_index = 0
            self._last_request = None


# ---------------------------------------------------------------------------------------
# Export processing shared by both protocols


@dataclass
class Answer:
    """How an ingest server answers one export (decided by Receiver.process)."""

    fault: Optional[Fault]
    response: bytes = b""  # serialized ExportProfilesServiceResponse for ok / partial
    decode_error: Optional[str] = None
    too_large: bool = False
    record: dict[str, Any] = field(default_factory=dict)


def _header_value(value: Any) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def _lowercase_headers(pairs: Iterable[tuple[str, Any]]) -> dict[str, str]:
    """Lowercased keys; repeated keys joined with ", "; binary values base64."""
    headers: dict[str, str] = {}
    for key, value in pairs:
        key = key.lower()
        text = _header_value(value)
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


class Receiver:
    """Owns the ingest servers (restartable for /down and /up), the store and the control server."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.host: str = args.host
        self.max_request_bytes: int = args.max_request_bytes
        self.store = Store(args.max_records)
        self.grpc_port: int = args.grpc_port
        self.http_port: int = args.http_port
        self.control_port: int = args.control_port
        self.tls = bool(args.tls_cert)
        self.http_ssl_context: Optional[ssl.SSLContext] = None
        self.grpc_credentials: Optional[grpc.ServerCredentials] = None
        if self.tls:
            self._load_tls(args.tls_cert, args.tls_key, args.tls_client_ca)

        self._ingest_lock = threading.RLock()
        self._up = False
        self._up_at: Optional[float] = None
        self._timer: Optional[threading.Timer] = None
        self._grpc_server: Optional[grpc.Server] = None
        self._grpc_executor: Optional[futures.ThreadPoolExecutor] = None
        self._http_server: Optional[_HttpServer] = None
        self._control_server: Optional[_HttpServer] = None
        # Set to cut short delay_seconds stalls (on /down and on exit); replaced on /up.
        self._stall_cancel = threading.Event()

    # -- TLS ----------------------------------------------------------------------------

    def _load_tls(self, cert: str, key: str, client_ca: Optional[str]) -> None:
        with open(cert, "rb") as file:
            cert_pem = file.read()
        with open(key, "rb") as file:
            key_pem = file.read()
        ca_pem = None
        if client_ca:
            with open(client_ca, "rb") as file:
                ca_pem = file.read()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.set_alpn_protocols(["http/1.1"])
        if client_ca:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        self.http_ssl_context = context
        self.grpc_credentials = grpc.ssl_server_credentials(
            [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=ca_pem is not None
        )

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Starts ingest and control servers; the chosen ports replace any 0 port."""
        with self._ingest_lock:
            self._start_ingest()
        self._control_server = _HttpServer((self.host, self.control_port), ControlHandler, self, None)
        self.control_port = self._control_server.server_address[1]
        _serve_in_thread(self._control_server, "control")

    def shutdown(self) -> None:
        """Stops everything quickly (used on SIGTERM / SIGINT)."""
        with self._ingest_lock:
            if self._timer:
                self._timer.cancel()
            if self._up:
                self._stop_ingest()
        if self._control_server:
            self._control_server.shutdown()
            self._control_server.server_close()
            self._control_server.close_connections()

    def _grpc_address(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{port}"

    def _start_ingest(self) -> None:
        """Opens the gRPC and HTTP listeners (on the remembered ports once chosen)."""
        self._stall_cancel = threading.Event()
        executor = futures.ThreadPoolExecutor(max_workers=GRPC_WORKERS, thread_name_prefix="grpc-export")
        server = grpc.server(
            executor,
            options=[
                ("grpc.max_receive_message_length", min(self.max_request_bytes, 2**31 - 1)),
                # Hand us the message as sent, so wire size and gzip are known; we gunzip.
                ("grpc.per_message_decompression", 0),
                # identity (bit 0) and gzip (bit 2); deflate is refused with UNIMPLEMENTED.
                ("grpc.compression_enabled_algorithms_bitset", 0b101),
                ("grpc.so_reuseport", 0),
            ],
        )
        handler = grpc.method_handlers_generic_handler(
            SERVICE_NAME, {"Export": grpc.unary_unary_rpc_method_handler(self._grpc_export)}
        )
        server.add_generic_rpc_handlers((handler,))
        address = self._grpc_address(self.grpc_port)
        try:
            if self.grpc_credentials is not None:
                port = server.add_secure_port(address, self.grpc_credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as error:
            port, reason = 0, str(error)
        else:
            reason = "port in use?"
        if not port:
            executor.shutdown(wait=False)
            raise OSError(f"cannot listen for gRPC on {address}: {reason}")
        try:
            http_server = _HttpServer((self.host, self.http_port), IngestHandler, self, self.http_ssl_context)
        except OSError:
            server.stop(None)
            executor.shutdown(wait=False)
            raise
        server.start()
        self.grpc_port = port
        self._grpc_server, self._grpc_executor = server, executor
        self.http_port = http_server.server_address[1]
        self._http_server = http_server
        _serve_in_thread(http_server, "http-ingest")
        self._up, self._up_at = True, None
        log.info("ingest up: gRPC %s, HTTP port %d", address.rsplit(":", 1)[0] + f":{port}", self.http_port)

    def _stop_ingest(self) -> None:
        """Closes both ingest listeners and every open ingest connection."""
        self._stall_cancel.set()
        if self._grpc_server is not None:
            self._grpc_server.stop(None).wait(5)
            self._grpc_server = None
        if self._grpc_executor is not None:
            self._grpc_executor.shutdown(wait=False)
            self._grpc_executor = None
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server.close_connections()
            self._http_server = None
        self._up = False
        log.info("ingest down")

    def down(self, seconds: Optional[float]) -> None:
        """Takes ingest down; reopens it on the same ports after `seconds` (None: until up())."""
        with self._ingest_lock:
            if self._timer:
                self._timer.cancel()
                self._timer = None
            if self._up:
                self._stop_ingest()
            self._up_at = None
            if seconds is not None:
                self._up_at = time.time() + seconds
                timer = threading.Timer(seconds, lambda: self._reopen(timer))
                timer.daemon = True
                self._timer = timer
                timer.start()

    def up(self) -> None:
        """Reopens ingest now; raises OSError when a port cannot be bound again."""
        with self._ingest_lock:
            if self._timer:
                self._timer.cancel()
                self._timer = None
            if not self._up:
                self._start_ingest()

    def _reopen(self, timer: threading.Timer) -> None:
        """Timer callback of down(seconds): reopens, retrying briefly if a port is still busy."""
        for attempt in range(40):
            with self._ingest_lock:
                if self._timer is not timer or self._up:
                    return  # cancelled, superseded or already up
                try:
                    self._start_ingest()
                    self._timer = None
                    return
                except OSError as error:
                    log.warning("reopening ingest failed (attempt %d): %s", attempt + 1, error)
            time.sleep(0.25)
        log.error("giving up reopening ingest; POST /up to retry")

    def status(self) -> dict[str, Any]:
        recorded, faults = self.store.counts()
        with self._ingest_lock:
            return {
                "ingest_up": self._up,
                "up_at": self._up_at,
                "grpc_port": self.grpc_port,
                "http_port": self.http_port,
                "control_port": self.control_port,
                "tls": self.tls,
                "requests_recorded": recorded,
                "pending_faults": faults,
            }

    def stall(self, seconds: float) -> None:
        """Sleeps for a delay fault; returns early when ingest goes down or the receiver exits."""
        if seconds > 0:
            self._stall_cancel.wait(seconds)

    # -- processing -----------------------------------------------------------------------

    def process(
        self,
        protocol: str,
        path: str,
        wire: bytes,
        gzipped: bool,
        headers: dict[str, str],
        client_cert_cn: Optional[str],
    ) -> Answer:
        """Consumes the matching fault, decodes, checks, summarizes and records one export."""
        arrival = time.time()
        fault = self.store.take_fault(protocol)
        answer = Answer(fault=fault)
        message: Optional[bytes] = None
        try:
            message = conformance.gunzip(wire, self.max_request_bytes) if gzipped else wire
        except conformance.PayloadTooLarge as error:
            answer.decode_error, answer.too_large = str(error), True
        except ValueError as error:
            answer.decode_error = str(error)
        summary, violations = None, []
        if message is not None:
            if len(message) > self.max_request_bytes:
                answer.decode_error, answer.too_large = f"request larger than {self.max_request_bytes} bytes", True
            else:
                try:
                    request = conformance.decode_request(message)
                except ValueError as error:
                    answer.decode_error = str(error)
                else:
                    violations = conformance.check(request)
                    summary = conformance.summarize(request)

        if fault is not None and protocol == "grpc" and fault.grpc_status is not None:
            outcome = f"grpc {fault.grpc_status.name}"
        elif fault is not None and protocol == "http" and fault.http_status is not None:
            outcome = f"http {fault.http_status}"
        elif answer.decode_error is not None:
            if protocol == "grpc":
                outcome = "grpc RESOURCE_EXHAUSTED" if answer.too_large else "grpc INVALID_ARGUMENT"
            else:
                outcome = "http 413" if answer.too_large else "http 400"
        elif fault is not None and fault.rejected_profiles is not None:
            outcome = "partial"
            response = profiles_service_pb2.ExportProfilesServiceResponse()
            response.partial_success.rejected_profiles = fault.rejected_profiles
            response.partial_success.error_message = fault.error_message
            answer.response = response.SerializeToString()
        else:
            outcome = "ok"

        record = {
            "index": None,  # set by the store
            "protocol": protocol,
            "time": arrival,
            "path": path[:1024],
            "wire_bytes": len(wire),
            "message_bytes": None if message is None else len(message),
            "gzip": gzipped,
            "tls": self.tls,
            "client_cert_cn": client_cert_cn,
            "headers": headers,
            "fault": None if fault is None else dict(fault.spec, protocol=fault.protocol),
            "outcome": outcome,
            "decode_error": answer.decode_error,
            "summary": summary,
            "violations": violations,
        }
        index = self.store.add_record(record, message if answer.decode_error is None else None)
        answer.record = record
        log.info(
            "#%d %s %s: %d wire bytes%s -> %s%s%s",
            index,
            protocol,
            path[:100],
            len(wire),
            " gzip" if gzipped else "",
            outcome,
            f"; {summary['samples']} samples, {len(violations)} violations" if summary else "",
            f"; first: {violations[0]}" if violations else (f"; {answer.decode_error}" if answer.decode_error else ""),
        )
        return answer

    def record_rejection(self, protocol: str, path: str, headers: dict[str, str], status: int, reason: str) -> None:
        """Records an HTTP request refused before its body was read (404, 405, 411, 413, 415)."""
        record = {
            "index": None,  # set by the store
            "protocol": protocol,
            "time": time.time(),
            "path": path[:1024],
            "wire_bytes": None,
            "message_bytes": None,
            "gzip": headers.get("content-encoding", "").strip().lower() == "gzip",
            "tls": self.tls,
            "client_cert_cn": None,
            "headers": headers,
            "fault": None,
            "outcome": f"http {status}",
            "decode_error": reason,
            "summary": None,
            "violations": [],
        }
        index = self.store.add_record(record, None)
        log.info("#%d %s %s -> http %d: %s", index, protocol, path[:100], status, reason)

    # -- gRPC ---------------------------------------------------------------------------

    def _grpc_export(self, wire: bytes, context: grpc.ServicerContext) -> bytes:
        """ProfilesService/Export with raw bytes in and out (decoded by process())."""
        try:
            headers = _lowercase_headers((item.key, item.value) for item in context.invocation_metadata() or ())
            client_cn = None
            if self.grpc_credentials is not None:
                names = context.auth_context().get("x509_common_name")
                client_cn = names[0].decode("utf-8", "replace") if names else None
            answer = self.process("grpc", GRPC_METHOD, wire, wire.startswith(conformance.GZIP_MAGIC), headers, client_cn)
        except Exception:  # a bug here must not cost more than this one request
            log.exception("gRPC export failed")
            context.abort(grpc.StatusCode.INTERNAL, "receiver error")
        fault = answer.fault
        if fault is not None:
            self.stall(fault.delay_seconds)
        if fault is not None and fault.grpc_status is not None:
            message = fault.message or f"injected fault {fault.grpc_status.name}"
            if fault.retry_delay_seconds is not None:
                details = encode_rpc_status(fault.grpc_status.value[0], message, fault.retry_delay_seconds)
                context.set_trailing_metadata((("grpc-status-details-bin", details),))
            context.abort(fault.grpc_status, message)
        if answer.decode_error is not None:
            code = grpc.StatusCode.RESOURCE_EXHAUSTED if answer.too_large else grpc.StatusCode.INVALID_ARGUMENT
            context.abort(code, answer.decode_error)
        return answer.response


def _serve_in_thread(server: http.server.HTTPServer, name: str) -> None:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True)
    thread.start()


# ---------------------------------------------------------------------------------------
# HTTP servers


class _HttpServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its receiver, can do TLS (handshake in the connection
    thread) and can close every open connection (for /down)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type,
        receiver: Receiver,
        ssl_context: Optional[ssl.SSLContext],
    ) -> None:
        self.address_family = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)[0][0]
        self.receiver = receiver
        self.ssl_context = ssl_context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._connections_lock:
            self._connections.add(sock)
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (OSError, ssl.SSLError, ValueError)):
            log.debug("connection from %s ended: %s", client_address, error)
        else:
            log.exception("error serving %s", client_address)


class _Refused(Exception):
    """An HTTP request answered with an error before (or while) reading its body."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class _BaseHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "otlp-test-receiver"
    timeout = CONNECTION_TIMEOUT
    server: _HttpServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
        super().setup()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature from the base class)
        log.debug("%s %s", self.address_string(), format % args)

    def respond(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Iterable[tuple[str, str]] = (),
        close: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self, limit: int) -> bytes:
        """Reads a Content-Length or chunked body of at most `limit` bytes; raises _Refused."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise _Refused(411, "Content-Length (or chunked Transfer-Encoding) required")
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            raise _Refused(400, f"bad Content-Length {length_header[:40]!r}") from None
        if length > limit:
            raise _Refused(413, f"body of {length} bytes exceeds the {limit}-byte limit")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _Refused(400, f"body ended after {len(body)} of {length} bytes")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise _Refused(400, "malformed or truncated chunk size line")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size < 0:
                    raise ValueError
            except ValueError:
                raise _Refused(400, "bad chunk size") from None
            if size == 0:
                for _ in range(100):  # trailers
                    if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                        return bytes(body)
                raise _Refused(400, "too many trailer lines")
            if len(body) + size > limit:
                raise _Refused(413, f"chunked body exceeds the {limit}-byte limit")
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise _Refused(400, "truncated chunk")
            body += chunk
            if self.rfile.readline(1024) not in (b"\r\n", b"\n"):
                raise _Refused(400, "chunk not followed by CRLF")


class IngestHandler(_BaseHandler):
    """HTTP ingest: POST /v1development/profiles."""

    def _path(self) -> str:
        return urllib.parse.urlsplit(self.path).path

    def _headers(self) -> dict[str, str]:
        return _lowercase_headers(self.headers.items())

    def _refuse(self, status: int, reason: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        """Records and answers a request refused without reading its body; closes the connection."""
        self.server.receiver.record_rejection("http", self.path, self._headers(), status, reason)
        body = encode_rpc_status(HTTP_TO_RPC_CODE.get(status, 2), reason)
        self.respond(status, body, PROTOBUF, headers, close=True)

    def handle_expect_100(self) -> bool:
        """Refuses an oversized body before the client sends it."""
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.server.receiver.max_request_bytes:
            self._refuse(413, f"body of {length} bytes exceeds the {self.server.receiver.max_request_bytes}-byte limit")
            return False
        return super().handle_expect_100()

    def _not_post(self) -> None:
        if self._path() == HTTP_PATH:
            self._refuse(405, f"{self.command} not allowed; use POST", [("Allow", "POST")])
        else:
            self._refuse(404, f"no such path {self._path()[:200]!r}; OTLP profiles go to POST {HTTP_PATH}")

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_post

    def do_POST(self) -> None:
        receiver = self.server.receiver
        path = self._path()
        if path != HTTP_PATH:
            self._refuse(404, f"no such path {path[:200]!r}; OTLP profiles go to POST {HTTP_PATH}")
            return
        media_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media_type != PROTOBUF:
            self._refuse(415, f"Content-Type {media_type[:100]!r} not supported; use {PROTOBUF}")
            return
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity", "gzip"):
            self._refuse(415, f"Content-Encoding {encoding[:100]!r} not supported; use gzip or none")
            return
        try:
            body = self.read_body(receiver.max_request_bytes)
        except _Refused as refused:
            self._refuse(refused.status, refused.reason)
            return

        client_cn = None
        if isinstance(self.request, ssl.SSLSocket):
            client_cn = _common_name(self.request.getpeercert())
        answer = receiver.process("http", self.path, body, encoding == "gzip", self._headers(), client_cn)
        fault = answer.fault
        if fault is not None:
            receiver.stall(fault.delay_seconds)
        if fault is not None and fault.http_status is not None:
            headers = [("Retry-After", fault.retry_after)] if fault.retry_after is not None else []
            if fault.body is not None:
                self.respond(fault.http_status, fault.body.encode(), "text/plain; charset=utf-8", headers)
            else:
                message = fault.message or f"injected fault HTTP {fault.http_status}"
                status_body = encode_rpc_status(HTTP_TO_RPC_CODE.get(fault.http_status, 2), message)
                self.respond(fault.http_status, status_body, PROTOBUF, headers)
        elif answer.decode_error is not None:
            status = 413 if answer.too_large else 400
            self.respond(status, encode_rpc_status(HTTP_TO_RPC_CODE[status], answer.decode_error), PROTOBUF)
        else:
            self.respond(200, answer.response, PROTOBUF)


def _common_name(certificate: Optional[dict[str, Any]]) -> Optional[str]:
    """The subject commonName of a certificate as ssl.getpeercert() returns it."""
    for rdn in (certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class ControlHandler(_BaseHandler):
    """The control API: JSON over plain HTTP (see README.md)."""

    def _json(self, status: int, value: Any) -> None:
        self.respond(status, (json.dumps(value) + "\n").encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _read_json(self) -> Any:
        if "Content-Length" not in self.headers and "Transfer-Encoding" not in self.headers:
            return None  # e.g. `curl -X POST` without -d
        body = self.read_body(MAX_CONTROL_BODY)
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError as error:
            raise _Refused(400, f"body is not JSON: {error}") from None

    def do_GET(self) -> None:
        receiver = self.server.receiver
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/requests":
            try:
                since = int(query.get("since", ["0"])[0])
            except ValueError:
                self._error(400, "since must be an integer")
                return
            self._json(200, receiver.store.records(since))
        elif url.path == "/status":
            self._json(200, receiver.status())
        elif url.path == "/faults":
            self._json(200, receiver.store.pending_faults())
        elif url.path == "/last-request":
            last = receiver.store.last_request()
            if last is None:
                self._error(404, "no request decoded yet")
            else:
                self.respond(200, last[1], PROTOBUF, [("X-Request-Index", str(last[0]))])
        else:
            self._error(404, f"no such path {url.path[:200]!r}")

    def do_POST(self) -> None:
        receiver = self.server.receiver
        path = urllib.parse.urlsplit(self.path).path
        try:
            body = self._read_json()
        except _Refused as refused:
            self.close_connection = True
            self._error(refused.status, refused.reason)
            return
        if path == "/faults":
            specs = body if isinstance(body, list) else [body]
            try:
                faults = [parse_fault(spec) for spec in specs]
                pending = receiver.store.add_faults(faults)
            except ValueError as error:
                self._error(400, str(error))
                return
            self._json(200, {"pending_faults": pending})
        elif path == "/down":
            seconds = None
            if isinstance(body, dict) and body.get("seconds") is not None:
                try:
                    seconds = _seconds(body["seconds"], "seconds")
                except ValueError as error:
                    self._error(400, str(error))
                    return
            elif body is not None and not isinstance(body, dict):
                self._error(400, 'body must be {"seconds": N} or empty')
                return
            receiver.down(seconds)
            self._json(200, receiver.status())
        elif path == "/up":
            try:
                receiver.up()
            except OSError as error:
                self._error(500, str(error))
                return
            self._json(200, receiver.status())
        elif path == "/reset":
            receiver.store.reset()
            self._json(200, receiver.status())
        else:
            self._error(404, f"no such path {path[:200]!r}")


# ---------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="OTLP profiles test receiver (gRPC + HTTP) with a control API.")
    parser.add_argument("--grpc-port", type=int, required=True, help="gRPC ingest port (0: any free port)")
    parser.add_argument("--http-port", type=int, required=True, help="HTTP ingest port (0: any free port)")
    parser.add_argument("--control-port", type=int, required=True, help="control API port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--tls-cert", help="server certificate (PEM): serve gRPC and HTTP ingest over TLS")
    parser.add_argument("--tls-key", help="server private key (PEM)")
    parser.add_argument("--tls-client-ca", help="CA (PEM) client certificates must chain to (mTLS)")
    parser.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                        help="largest request, compressed or not (default 128 MiB)")
    parser.add_argument("--max-records", type=int, default=DEFAULT_MAX_RECORDS,
                        help="request records kept (default 10000)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    for name in ("grpc_port", "http_port", "control_port"):
        if not 0 <= getattr(args, name) <= 65535:
            parser.error(f"--{name.replace('_', '-')} must be within [0, 65535]")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    if args.max_request_bytes <= 0 or args.max_records <= 0:
        parser.error("--max-request-bytes and --max-records must be positive")
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level, format="receiver: %(created).3f %(message)s")
    stop = threading.Event()
    # A parent may spawn us with these signals blocked (Foundation's Process inherits the
    # mask of a swift-testing worker thread): unblock them, or SIGTERM would never arrive.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop.set())

    try:
        receiver = Receiver(args)
        receiver.start()
    except (OSError, ssl.SSLError, ValueError) as error:
        log.error("cannot start: %s", error)
        logging.shutdown()
        os._exit(1)  # a gRPC server may already run in non-daemon threads
    print(
        json.dumps({"grpc_port": receiver.grpc_port, "http_port": receiver.http_port, "control_port": receiver.control_port}),
        flush=True,
    )
    while not stop.wait(0.1):
        pass
    log.info("stopping")
    receiver.shutdown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Export handlers may still run in non-daemon gRPC worker threads; do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    main()
