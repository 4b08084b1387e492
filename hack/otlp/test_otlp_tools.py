"""Tests for the OTLP test tools: the conformance checker, check.py and receiver.py.

Run: .venv/bin/python -m unittest discover -s hack/otlp -p 'test_*.py'

The checker tests build one valid request with the official generated classes, then
break exactly one rule per test and expect the violation naming it. The receiver tests
start receiver.py as a subprocess and talk to it as a client would: grpcio (gzip) and
urllib (gzip body), plus the control API.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from contextlib import redirect_stderr, redirect_stdout
from typing import Any, Callable, Optional

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as service_pb2
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2_grpc as service_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.profiles.v1development import profiles_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import check  # noqa: E402
import conformance  # noqa: E402

T0 = 1_700_000_000_000_000_000  # profile start, ns
PROFILE_ID = bytes(range(1, 17))
TRACE_ID = bytes(range(16, 32))
SPAN_ID = bytes(range(32, 40))
HTLHASH = "0123456789abcdef0123456789abcdef"


def kv(key: str, value: Any) -> common_pb2.KeyValue:
    """A resource KeyValue."""
    pair = common_pb2.KeyValue(key=key)
    if isinstance(value, int):
        pair.value.int_value = value
    else:
        pair.value.string_value = value
    return pair


def valid_request() -> service_pb2.ExportProfilesServiceRequest:
    """A small request that follows every rule: two resources, one CPU profile each."""
    strings: list[str] = [""]

    def s(text: str) -> int:
        if text not in strings:
            strings.append(text)
        return strings.index(text)

    request = service_pb2.ExportProfilesServiceRequest()
    d = request.dictionary

    def attribute(key: str, value: Any) -> int:
        entry = d.attribute_table.add(key_strindex=s(key))
        if isinstance(value, int):
            entry.value.int_value = value
        else:
            entry.value.string_value = value
        return len(d.attribute_table) - 1

    d.attribute_table.add()  # 0: unset
    build_id = attribute("process.executable.build_id.htlhash", HTLHASH)
    native = attribute("profile.frame.type", "native")
    thread_1 = attribute("thread.id", 101)
    thread_2 = attribute("thread.id", 102)

    d.mapping_table.add()
    d.mapping_table.add(
        memory_start=0x400000, memory_limit=0x500000, filename_strindex=s("/usr/bin/app"), attribute_indices=[build_id]
    )
    d.function_table.add()
    d.function_table.add(name_strindex=s("main"), filename_strindex=s("app.c"), start_line=3)
    d.function_table.add(name_strindex=s("work"), filename_strindex=s("app.c"), start_line=20)
    d.location_table.add()
    d.location_table.add(
        mapping_index=1,
        address=0x401000,
        lines=[profiles_pb2.Line(function_index=2, line=25, column=4)],
        attribute_indices=[native],
    )
    d.location_table.add(
        mapping_index=1, address=0x402000, lines=[profiles_pb2.Line(function_index=1, line=9)], attribute_indices=[native]
    )
    d.stack_table.add()
    d.stack_table.add(location_indices=[1, 2])  # work <- main
    d.stack_table.add(location_indices=[2])  # main
    d.link_table.add()
    d.link_table.add(trace_id=TRACE_ID, span_id=SPAN_ID)

    for pid, threads in ((1234, (thread_1, thread_2)), (5678, (thread_1,))):
        resource_profiles = request.resource_profiles.add()
        resource_profiles.resource.attributes.extend(
            [kv("process.pid", pid), kv("service.name", f"app-{pid}"), kv("host.name", "box")]
        )
        scope_profiles = resource_profiles.scope_profiles.add()
        scope_profiles.scope.name = "nodeprof"
        profile = scope_profiles.profiles.add(
            time_unix_nano=T0,
            duration_nano=1_000_000_000,
            period=10_000_000,
            profile_id=PROFILE_ID,
        )
        profile.sample_type.type_strindex = s("samples")
        profile.sample_type.unit_strindex = s("count")
        profile.period_type.type_strindex = s("cpu")
        profile.period_type.unit_strindex = s("nanoseconds")
        profile.samples.add(
            stack_index=1,
            attribute_indices=[threads[0]],
            link_index=1,
            values=[1, 1, 1],
            timestamps_unix_nano=[T0 + 1, T0 + 2, T0 + 999_999_999],
        )
        profile.samples.add(
            stack_index=2, attribute_indices=[threads[-1]], values=[1, 1], timestamps_unix_nano=[T0 + 5, T0 + 6]
        )
        if len(threads) > 1:
            profile.samples.add(stack_index=1, attribute_indices=[threads[1]], values=[1], timestamps_unix_nano=[T0 + 7])
    d.string_table.extend(strings)
    return request


def first_profile(request: service_pb2.ExportProfilesServiceRequest) -> profiles_pb2.Profile:
    return request.resource_profiles[0].scope_profiles[0].profiles[0]


class CheckerTest(unittest.TestCase):
    """One test per rule: break it in a valid request and expect the violation."""

    def violations(self, mutate: Callable[[service_pb2.ExportProfilesServiceRequest], Any]) -> list[str]:
        request = valid_request()
        mutate(request)
        # Round-trip through the wire format: the checker sees what a receiver decodes.
        return conformance.check(service_pb2.ExportProfilesServiceRequest.FromString(request.SerializeToString()))

    def assertViolation(self, mutate: Callable[[Any], Any], *expected: str) -> list[str]:
        found = self.violations(mutate)
        for text in expected:
            self.assertTrue(any(text in v for v in found), f"no violation containing {text!r} in {found}")
        return found

    # -- baseline -----------------------------------------------------------------------

    def test_valid_request_conforms(self) -> None:
        self.assertEqual(conformance.check(valid_request()), [])

    def test_summary(self) -> None:
        summary = conformance.summarize(valid_request())
        self.assertEqual(summary["resource_profiles"], 2)
        self.assertEqual(summary["profiles"], 2)
        self.assertEqual(summary["samples"], 5)
        self.assertEqual(summary["total_weight"], 3 + 2 + 1 + 3 + 2)
        self.assertEqual(summary["weight_by_sample_type"], {"samples/count": 11})
        self.assertEqual(summary["top_functions"], [["work", 7], ["main", 4]])
        self.assertEqual(summary["top_functions_by_resource"], {"1234": [["work", 4], ["main", 2]], "5678": [["work", 3], ["main", 2]]})
        self.assertEqual(summary["resources"][0]["attributes"], {"process.pid": 1234, "service.name": "app-1234", "host.name": "box"})
        self.assertEqual(summary["resources"][1]["weight"], 5)
        json.dumps(summary)  # JSON-able

    def test_summary_unknown_leaf_and_weights_without_values(self) -> None:
        request = valid_request()
        request.dictionary.location_table[1].ClearField("lines")
        profile = first_profile(request)
        del profile.samples[0].values[:]
        summary = conformance.summarize(request)
        # Stack 1 (leaf location 1) carries 3 + 1 + 3; sample 0 now weighs its 3 timestamps.
        self.assertEqual(summary["top_functions"], [["[unknown]", 7], ["main", 4]])

    def test_summary_survives_garbage_indexes(self) -> None:
        request = valid_request()
        first_profile(request).samples[0].stack_index = 99
        request.dictionary.stack_table[2].location_indices[0] = -5
        request.resource_profiles[0].resource.attributes.add(key_strindex=999)
        request.resource_profiles[0].resource.attributes.add(key="x").value.double_value = float("nan")
        json.dumps(conformance.summarize(request), allow_nan=False)

    # -- dictionary rules ---------------------------------------------------------------

    def test_dictionary_missing(self) -> None:
        self.assertViolation(lambda r: r.ClearField("dictionary"), "dictionary is missing")

    def test_empty_tables(self) -> None:
        for table in conformance._TABLES:
            with self.subTest(table=table):
                self.assertViolation(lambda r: r.dictionary.ClearField(table), f"dictionary.{table} is empty")

    def test_string_zero_not_empty(self) -> None:
        self.assertViolation(lambda r: r.dictionary.string_table.__setitem__(0, "x"), "string_table[0] is 'x'")

    def test_entry_zero_not_default(self) -> None:
        cases = {
            "mapping_table": lambda d: setattr(d.mapping_table[0], "memory_limit", 1),
            "location_table": lambda d: d.location_table[0].lines.add(),
            "function_table": lambda d: setattr(d.function_table[0], "start_line", 1),
            "stack_table": lambda d: d.stack_table[0].location_indices.append(1),
            "attribute_table": lambda d: setattr(d.attribute_table[0].value, "int_value", 0),
        }
        for table, mutate in cases.items():
            with self.subTest(table=table):
                self.assertViolation(lambda r: mutate(r.dictionary), f"{table}[0] is not the all-default")

    def test_link_zero_ids(self) -> None:
        self.assertViolation(lambda r: setattr(r.dictionary.link_table[0], "span_id", b"\x01" * 8), "link_table[0] must have all-zero ids")
        self.assertViolation(lambda r: setattr(r.dictionary.link_table[0], "trace_id", bytes(15)), "link_table[0] must have all-zero ids")

        def zero_ids(r: Any) -> None:
            r.dictionary.link_table[0].trace_id = bytes(16)
            r.dictionary.link_table[0].span_id = bytes(8)

        self.assertEqual(self.violations(zero_ids), [])

    def test_string_indexes_out_of_range(self) -> None:
        cases = {
            "function_table[1].name_strindex 500": lambda d, p: setattr(d.function_table[1], "name_strindex", 500),
            "function_table[2].system_name_strindex -1": lambda d, p: setattr(d.function_table[2], "system_name_strindex", -1),
            "function_table[1].filename_strindex 500": lambda d, p: setattr(d.function_table[1], "filename_strindex", 500),
            "mapping_table[1].filename_strindex 500": lambda d, p: setattr(d.mapping_table[1], "filename_strindex", 500),
            "attribute_table[2].key_strindex 500": lambda d, p: setattr(d.attribute_table[2], "key_strindex", 500),
            "attribute_table[2].unit_strindex 500": lambda d, p: setattr(d.attribute_table[2], "unit_strindex", 500),
            "attribute_table[2].value.string_value_strindex 500": lambda d, p: setattr(d.attribute_table[2].value, "string_value_strindex", 500),
            "sample_type.type_strindex 500": lambda d, p: setattr(p.sample_type, "type_strindex", 500),
            "sample_type.unit_strindex 500": lambda d, p: setattr(p.sample_type, "unit_strindex", 500),
            "period_type.type_strindex 500": lambda d, p: setattr(p.period_type, "type_strindex", 500),
            "period_type.unit_strindex 500": lambda d, p: setattr(p.period_type, "unit_strindex", 500),
        }
        for expected, mutate in cases.items():
            with self.subTest(expected=expected):
                self.assertViolation(lambda r: mutate(r.dictionary, first_profile(r)), expected, "out of range (string_table has")

    def test_resource_key_strindex_out_of_range(self) -> None:
        self.assertViolation(
            lambda r: r.resource_profiles[0].resource.attributes.add(key_strindex=777),
            "resource_profiles[0].resource.attributes[3].key_strindex 777 out of range",
        )

    def test_table_indexes_out_of_range(self) -> None:
        cases = {
            "location_table[1].mapping_index 12 out of range (mapping_table has 2 entries)": lambda d, p: setattr(
                d.location_table[1], "mapping_index", 12
            ),
            "location_table[2].lines[0].function_index 9 out of range (function_table has 3 entries)": lambda d, p: setattr(
                d.location_table[2].lines[0], "function_index", 9
            ),
            ".samples[0].stack_index 3 out of range (stack_table has 3 entries)": lambda d, p: setattr(p.samples[0], "stack_index", 3),
            ".samples[1].link_index -2 out of range (link_table has 2 entries)": lambda d, p: setattr(p.samples[1], "link_index", -2),
            ".samples[0].attribute_indices[1] 5 out of range (attribute_table has 5 entries)": lambda d, p: p.samples[0].attribute_indices.append(5),
            "profiles[0].attribute_indices[0] 50 out of range": lambda d, p: p.attribute_indices.append(50),
            "mapping_table[1].attribute_indices[1] 50 out of range": lambda d, p: d.mapping_table[1].attribute_indices.append(50),
            "location_table[1].attribute_indices[0] 50 out of range": lambda d, p: d.location_table[1].attribute_indices.__setitem__(0, 50),
            "stack_table[1].location_indices[1] 3 out of range (location_table has 3 entries)": lambda d, p: d.stack_table[1].location_indices.__setitem__(1, 3),
        }
        for expected, mutate in cases.items():
            with self.subTest(expected=expected):
                self.assertViolation(lambda r: mutate(r.dictionary, first_profile(r)), expected)

    def test_unset_entry_inside_lists(self) -> None:
        self.assertViolation(lambda r: r.dictionary.stack_table[2].location_indices.append(0), "stack_table[2].location_indices[1] is 0")
        self.assertViolation(lambda r: first_profile(r).attribute_indices.append(0), "attribute_indices[0] is 0")

    def test_duplicate_attribute_keys(self) -> None:
        # thread.id twice, through two different entries: keys are compared as strings.
        found = self.assertViolation(
            lambda r: first_profile(r).samples[0].attribute_indices.append(4), "samples[0].attribute_indices has duplicate key 'thread.id'"
        )
        self.assertEqual(len(found), 1, found)
        self.assertViolation(
            lambda r: r.dictionary.mapping_table[1].attribute_indices.append(1),
            "mapping_table[1].attribute_indices has duplicate key 'process.executable.build_id.htlhash'",
        )

    def test_duplicate_resource_attribute_keys(self) -> None:
        self.assertViolation(
            lambda r: r.resource_profiles[1].resource.attributes.append(kv("host.name", "other")),
            "resource_profiles[1].resource.attributes has duplicate key 'host.name'",
        )

    def test_key_and_key_strindex_exclusive(self) -> None:
        def both(r: Any) -> None:
            pair = r.resource_profiles[0].resource.attributes[2]
            pair.key_strindex = r.dictionary.string_table[:].index("main")

        self.assertViolation(both, "sets both key and key_strindex")

    def test_duplicate_entries(self) -> None:
        cases = {
            "string_table[": lambda d: d.string_table.append("main"),
            "function_table[3] duplicates function_table[1]": lambda d: d.function_table.append(d.function_table[1]),
            "mapping_table[2] duplicates mapping_table[1]": lambda d: d.mapping_table.append(d.mapping_table[1]),
            "location_table[3] duplicates location_table[2]": lambda d: d.location_table.append(d.location_table[2]),
            "stack_table[3] duplicates stack_table[1]": lambda d: d.stack_table.append(d.stack_table[1]),
            "link_table[2] duplicates link_table[1]": lambda d: d.link_table.append(d.link_table[1]),
            "attribute_table[5] duplicates attribute_table[3]": lambda d: d.attribute_table.append(d.attribute_table[3]),
            "mapping_table[2] duplicates mapping_table[0]": lambda d: d.mapping_table.add(),
        }
        for expected, mutate in cases.items():
            with self.subTest(expected=expected):
                self.assertViolation(lambda r: mutate(r.dictionary), expected)

    def test_orphans(self) -> None:
        cases = {
            "string_table[": lambda d: d.string_table.append("nobody"),
            "function_table[3] is an orphan": lambda d: d.function_table.add(name_strindex=1),
            "mapping_table[2] is an orphan": lambda d: d.mapping_table.add(memory_start=1, memory_limit=2, attribute_indices=[1]),
            "location_table[3] is an orphan": lambda d: d.location_table.add(address=7),
            "stack_table[3] is an orphan": lambda d: d.stack_table.add(location_indices=[2, 1]),
            "link_table[2] is an orphan": lambda d: d.link_table.add(trace_id=b"t" * 16, span_id=b"s" * 8),
            "attribute_table[5] is an orphan": lambda d: d.attribute_table.add(
                key_strindex=d.string_table[:].index("main"), value=common_pb2.AnyValue(int_value=3)
            ),
        }
        for expected, mutate in cases.items():
            with self.subTest(expected=expected):
                found = self.assertViolation(lambda r: mutate(r.dictionary), expected)
                self.assertTrue(all("orphan" in v for v in found), found)

    def test_link_lengths(self) -> None:
        self.assertViolation(lambda r: setattr(r.dictionary.link_table[1], "trace_id", b"x" * 15), "link_table[1].trace_id is 15 bytes, must be 16")
        self.assertViolation(lambda r: setattr(r.dictionary.link_table[1], "span_id", b"x" * 9), "link_table[1].span_id is 9 bytes, must be 8")

    def test_mapping_bounds(self) -> None:
        self.assertViolation(
            lambda r: setattr(r.dictionary.mapping_table[1], "memory_limit", 0x400000), "mapping_table[1] memory_start 0x400000 must be < memory_limit 0x400000"
        )

        def both_zero(r: Any) -> None:
            r.dictionary.mapping_table[1].memory_start = 0
            r.dictionary.mapping_table[1].memory_limit = 0

        self.assertEqual(self.violations(both_zero), [])

    def test_negative_lines(self) -> None:
        self.assertViolation(lambda r: setattr(r.dictionary.location_table[1].lines[0], "line", -1), "location_table[1].lines[0].line -1 is negative")
        self.assertViolation(lambda r: setattr(r.dictionary.location_table[1].lines[0], "column", -3), "location_table[1].lines[0].column -3 is negative")
        self.assertViolation(lambda r: setattr(r.dictionary.function_table[2], "start_line", -7), "function_table[2].start_line -7 is negative")

    # -- profile and sample rules -------------------------------------------------------

    def test_sample_type_missing(self) -> None:
        self.assertViolation(lambda r: first_profile(r).ClearField("sample_type"), "profiles[0].sample_type is not set")

    def test_sample_type_conventions(self) -> None:
        def period_type(r: Any) -> None:
            first_profile(r).period_type.unit_strindex = first_profile(r).sample_type.unit_strindex

        self.assertViolation(period_type, "period_type must be cpu/nanoseconds")
        self.assertViolation(lambda r: setattr(first_profile(r), "period", 0), "period 0 must be > 0")

    def test_timestamps_outside_window(self) -> None:
        self.assertViolation(
            lambda r: first_profile(r).samples[0].timestamps_unix_nano.__setitem__(2, T0 + 1_000_000_000),
            "samples[0].timestamps_unix_nano[2] 1700000001000000000 outside",
        )
        self.assertViolation(lambda r: first_profile(r).samples[1].timestamps_unix_nano.__setitem__(0, T0 - 1), "samples[1].timestamps_unix_nano[0]")

    def test_values_timestamps_length(self) -> None:
        self.assertViolation(lambda r: first_profile(r).samples[0].values.append(1), "samples[0] has 4 values but 3 timestamps")

    def test_values_only_needs_exactly_one(self) -> None:
        def shape(r: Any) -> None:
            for sample in first_profile(r).samples:
                del sample.timestamps_unix_nano[:]

        self.assertViolation(shape, "samples[0] has 3 values and no timestamps (exactly 1 expected)")

    def test_neither_values_nor_timestamps(self) -> None:
        def empty(r: Any) -> None:
            sample = first_profile(r).samples[1]
            del sample.values[:]
            del sample.timestamps_unix_nano[:]

        self.assertViolation(empty, "samples[1] has neither values nor timestamps")

    def test_mixed_shapes(self) -> None:
        self.assertViolation(
            lambda r: first_profile(r).samples[1].ClearField("values"), "samples[1] has shape timestamps but samples[0] has shape values+timestamps"
        )

    def test_timestamps_only_is_fine(self) -> None:
        def timestamps_only(r: Any) -> None:
            for resource_profiles in r.resource_profiles:
                for sample in resource_profiles.scope_profiles[0].profiles[0].samples:
                    sample.ClearField("values")

        self.assertEqual(self.violations(timestamps_only), [])

    def test_unmerged_samples(self) -> None:
        def duplicate(r: Any) -> None:
            profile = first_profile(r)
            profile.samples.add(stack_index=2, attribute_indices=[4], values=[1], timestamps_unix_nano=[T0 + 50])

        self.assertViolation(duplicate, "samples[3] has the same stack, attributes and link as samples[1] (should be merged)")

    def test_unmerged_samples_compare_attribute_values(self) -> None:
        # Same key/value through a duplicated table entry still counts as the same set.
        def duplicate(r: Any) -> None:
            d = r.dictionary
            d.attribute_table.append(d.attribute_table[4])
            first_profile(r).samples.add(stack_index=2, attribute_indices=[5], values=[1], timestamps_unix_nano=[T0 + 50])

        self.assertViolation(duplicate, "should be merged", "attribute_table[5] duplicates attribute_table[4]")

    def test_profile_id(self) -> None:
        self.assertViolation(lambda r: setattr(first_profile(r), "profile_id", bytes(16)), "profile_id is all zero")
        self.assertViolation(lambda r: setattr(first_profile(r), "profile_id", b"short"), "profile_id is 5 bytes, must be 16")
        self.assertViolation(lambda r: first_profile(r).ClearField("profile_id"), "profile_id is 0 bytes")

    def test_original_payload_both_or_neither(self) -> None:
        self.assertViolation(lambda r: setattr(first_profile(r), "original_payload_format", "pprof"), "original_payload_format and original_payload")
        self.assertViolation(lambda r: setattr(first_profile(r), "original_payload", b"\x1f\x8b"), "original_payload_format and original_payload")

        def both(r: Any) -> None:
            first_profile(r).original_payload_format = "pprof"
            first_profile(r).original_payload = b"data"

        self.assertEqual(self.violations(both), [])

    # -- semantic conventions -----------------------------------------------------------

    def test_mapping_needs_build_id(self) -> None:
        def no_build_id(r: Any) -> None:
            mapping = r.dictionary.mapping_table[1]
            mapping.attribute_indices[0] = 2  # profile.frame.type, not a build id

        self.assertViolation(no_build_id, "mapping_table[1] carries none of the attributes process.executable.build_id.gnu")

    def test_build_id_values(self) -> None:
        self.assertViolation(lambda r: setattr(r.dictionary.attribute_table[1].value, "string_value", "ABC"), "is not 32 lowercase hex digits")
        self.assertViolation(lambda r: setattr(r.dictionary.attribute_table[1].value, "int_value", 5), "must be a string value, not int_value")

    def test_frame_type_values(self) -> None:
        self.assertViolation(lambda r: setattr(r.dictionary.attribute_table[2].value, "string_value", "swift"), "profile.frame.type value 'swift' is not one of")
        self.assertViolation(lambda r: setattr(r.dictionary.attribute_table[2].value, "bool_value", True), "profile.frame.type must be a string value")

    def test_frame_type_through_string_table(self) -> None:
        def via_strindex(r: Any) -> None:
            r.dictionary.string_table.append("native")
            r.dictionary.attribute_table[2].value.string_value_strindex = len(r.dictionary.string_table) - 1

        self.assertEqual(self.violations(via_strindex), [])

    def test_thread_id_must_be_int(self) -> None:
        self.assertViolation(lambda r: setattr(r.dictionary.attribute_table[3].value, "string_value", "101"), "attribute_table[3]: thread.id must be an int value, not string_value")

    def test_process_pid_must_be_int(self) -> None:
        self.assertViolation(
            lambda r: setattr(r.resource_profiles[0].resource.attributes[0].value, "string_value", "1234"), "process.pid must be an int value"
        )

    # -- hostile inputs -----------------------------------------------------------------

    def test_huge_counts_are_capped(self) -> None:
        request = valid_request()
        profile = first_profile(request)
        for i in range(20_000):
            profile.samples.add(stack_index=1_000_000 + i, values=[1], timestamps_unix_nano=[T0])
        started = time.monotonic()
        found = conformance.check(request)
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(len(found), conformance.DEFAULT_MAX_VIOLATIONS + 1)
        self.assertRegex(found[-1], r"^\.\.\. \d+ more violations$")
        self.assertEqual(len(conformance.check(request, max_violations=5)), 6)

    def test_hostile_long_strings_are_shortened(self) -> None:
        found = self.assertViolation(lambda r: r.dictionary.string_table.__setitem__(0, "x" * 1_000_000), "string_table[0]")
        self.assertLess(max(len(v) for v in found), 400)

    def test_deeply_nested_values(self) -> None:
        # Deeper than the wire decoder allows, so built in memory: no RecursionError.
        request = valid_request()
        value = request.dictionary.attribute_table.add(key_strindex=1).value
        for _ in range(2000):
            value = value.array_value.values.add()
        value.string_value_strindex = 10_000
        found = conformance.check(request)
        self.assertTrue(any("deeper than" in v for v in found), found)
        json.dumps(conformance.summarize(request))

    def test_empty_and_unknown_only_messages_never_raise(self) -> None:
        for data in (b"", b"\x78\x01", b"\x12\x00", b"\x0a\x02\x12\x00", b"\x12\x04\x2a\x02\x10\x05"):
            with self.subTest(data=data):
                request = conformance.decode_request(data)
                self.assertIsInstance(conformance.check(request), list)
                conformance.summarize(request)

    def test_random_decodable_bytes_never_raise(self) -> None:
        import random

        rng = random.Random(1234)
        base = valid_request().SerializeToString()
        decoded = 0
        for _ in range(300):
            data = bytearray(base)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            try:
                request = conformance.decode_request(bytes(data))
            except ValueError:
                continue
            decoded += 1
            self.assertIsInstance(conformance.check(request), list)
            json.dumps(conformance.summarize(request))
        self.assertGreater(decoded, 10)


class GunzipTest(unittest.TestCase):
    def test_roundtrip_and_members(self) -> None:
        data = gzip.compress(b"abc") + gzip.compress(b"def")
        self.assertEqual(conformance.gunzip(data, 100), b"abcdef")

    def test_bomb_is_bounded(self) -> None:
        with self.assertRaises(conformance.PayloadTooLarge):
            conformance.gunzip(gzip.compress(bytes(10_000_000)), 1_000_000)

    def test_corrupt_and_truncated(self) -> None:
        compressed = gzip.compress(b"x" * 1000)
        for data in (compressed[:-5], compressed[:12], b"\x1f\x8bgarbage-garbage", compressed + b"junk"):
            with self.subTest(data=data[:16]):
                with self.assertRaises(ValueError):
                    conformance.gunzip(data, 1 << 20)


class CheckCommandTest(unittest.TestCase):
    """check.py: exit statuses 0 / 1 / 2 and output formats."""

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="otlp-check-")
        self.addCleanup(shutil.rmtree, self.directory)

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as file:
            file.write(data)
        return path

    def run_main(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            status = check.main(list(args))
        return status, out.getvalue(), err.getvalue()

    def test_valid_file(self) -> None:
        path = self.write("ok.pb", valid_request().SerializeToString())
        status, out, _ = self.run_main(path)
        self.assertEqual(status, 0)
        self.assertIn("conforms; 2 resource_profiles, 2 profiles, 5 samples, weight 11; top: work (7), main (4)", out)

    def test_gzip_file_and_json(self) -> None:
        path = self.write("ok.pb.gz", gzip.compress(valid_request().SerializeToString()))
        status, out, _ = self.run_main("--json", path)
        self.assertEqual(status, 0)
        result = json.loads(out)
        self.assertEqual(result["violations"], [])
        self.assertEqual(result["summary"]["samples"], 5)

    def test_violations_exit_1(self) -> None:
        request = valid_request()
        first_profile(request).profile_id = bytes(16)
        path = self.write("bad.pb", request.SerializeToString())
        status, out, _ = self.run_main(path)
        self.assertEqual(status, 1)
        self.assertIn("profile_id is all zero", out)
        status, out, _ = self.run_main("--json", path)
        self.assertEqual(status, 1)
        self.assertEqual(len(json.loads(out)["violations"]), 1)

    def test_unreadable_inputs_exit_2(self) -> None:
        good = valid_request().SerializeToString()
        compressed = gzip.compress(good)
        cases = {
            "garbage": b"\xff\xfe\xfd\xfc" * 64,
            "truncated": good[:-1],
            "gzip-garbage": b"\x1f\x8b" + b"\x00garbage" * 8,
            "gzip-truncated": compressed[: len(compressed) // 2],
            "empty": b"",
            "unknown-fields-only": b"\x78\x01\x1a\x00",
        }
        for name, data in cases.items():
            with self.subTest(name=name):
                status, out, err = self.run_main(self.write(name, data))
                self.assertEqual(status, 2, err)
                self.assertIn(f"check: {os.path.join(self.directory, name)}: ", err)
        status, _, err = self.run_main(os.path.join(self.directory, "missing.pb"))
        self.assertEqual(status, 2)
        self.assertIn("cannot read", err)

    def test_worst_status_wins(self) -> None:
        ok = self.write("ok.pb", valid_request().SerializeToString())
        bad = self.write("bad.pb", b"\xff" * 10)
        self.assertEqual(self.run_main(ok, bad)[0], 2)

    def test_subprocess_garbage_has_no_traceback(self) -> None:
        path = self.write("garbage", os.urandom(0) + b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 40)
        process = subprocess.run(
            [sys.executable, os.path.join(HERE, "check.py"), path], capture_output=True, text=True, timeout=30
        )
        self.assertEqual(process.returncode, 2, process.stderr)
        self.assertNotIn("Traceback", process.stderr)
        self.assertIn("not a valid ExportProfilesServiceRequest", process.stderr)


if __name__ == "__main__":
    unittest.main()
