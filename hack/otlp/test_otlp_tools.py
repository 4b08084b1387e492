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
        self.assertEqual(summary["resources"][0]["first_timestamp_unix_nano"], T0 + 1)
        self.assertEqual(summary["resources"][0]["last_timestamp_unix_nano"], T0 + 999_999_999)
        self.assertEqual(summary["resources"][1]["last_timestamp_unix_nano"], T0 + 999_999_999)
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

    def test_summary_is_bounded(self) -> None:
        request = valid_request()
        attributes = request.resource_profiles[0].resource.attributes
        wide = attributes.add(key="wide").value.kvlist_value
        for i in range(500):
            wide.values.add(key=f"k{i}").value.string_value = "v" * 5000
        deep = attributes.add(key="deep").value
        for _ in range(40):
            deep = deep.array_value.values.add()
        for i in range(500):
            attributes.add(key=f"extra{i}").value.bytes_value = b"\xff" * 5000
        summary = conformance.summarize(request)
        resource = summary["resources"][0]["attributes"]
        self.assertEqual(len(resource), conformance.SUMMARY_MAX_ATTRIBUTES)
        self.assertEqual(len(resource["wide"]), conformance.SUMMARY_MAX_ATTRIBUTES)
        self.assertEqual(len(resource["wide"]["k0"]), conformance.SUMMARY_MAX_STRING)
        self.assertLess(len(json.dumps(summary)), 1_000_000)

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



# ---------------------------------------------------------------------------------------
# receiver.py


RECEIVER = os.path.join(HERE, "receiver.py")
GRPC_METHOD = "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"
HTTP_PATH = "/v1development/profiles"
MAX_REQUEST_BYTES = 65_536  # small, so the size limit is cheap to test


def rpc_status_classes() -> tuple[type, type]:
    """google.rpc.Status and RetryInfo, built from a descriptor here: an independent
    decoder for the receiver's hand-encoded grpc-status-details-bin."""
    from google.protobuf import any_pb2, duration_pb2

    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="test/google_rpc.proto",
        package="google.rpc",
        syntax="proto3",
        dependency=["google/protobuf/any.proto", "google/protobuf/duration.proto"],
    )
    status = file.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL)
    status.field.add(name="message", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    status.field.add(
        name="details", number=3, type=field.TYPE_MESSAGE, type_name=".google.protobuf.Any", label=field.LABEL_REPEATED
    )
    retry_info = file.message_type.add(name="RetryInfo")
    retry_info.field.add(
        name="retry_delay", number=1, type=field.TYPE_MESSAGE, type_name=".google.protobuf.Duration", label=field.LABEL_OPTIONAL
    )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(duration_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.RetryInfo")),
    )


RpcStatus, RetryInfo = rpc_status_classes()


class ReceiverProcess:
    """receiver.py as a subprocess: ports from its JSON line, stderr kept in a temp file."""

    def __init__(self, *extra: str) -> None:
        import selectors

        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, RECEIVER, "--grpc-port", "0", "--http-port", "0", "--control-port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout=20)
        selector.close()
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError(f"receiver did not start:\n{self.logs()}")
        self.ports: dict[str, int] = json.loads(line)
        self.grpc_target = f"127.0.0.1:{self.ports['grpc_port']}"
        self.http_url = f"http://127.0.0.1:{self.ports['http_port']}"
        self.control_url = f"http://127.0.0.1:{self.ports['control_port']}"

    def logs(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.stderr.close()

    def control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.control_url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        status, records = self.control("GET", f"/requests?since={since}")
        assert status == 200, records
        return records

    def faults(self, *faults: dict[str, Any]) -> None:
        status, body = self.control("POST", "/faults", list(faults))
        assert status == 200, body


def http_post(url: str, body: bytes, headers: Optional[dict[str, str]] = None, context: Any = None) -> tuple[int, Any, bytes]:
    """POSTs and returns (status, headers, body) for success and HTTP errors alike."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


PROTOBUF_HEADERS = {"Content-Type": "application/x-protobuf"}
GZIP_HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}


class ReceiverTest(unittest.TestCase):
    """receiver.py over real sockets: both protocols, every fault kind, down / up."""

    receiver: ReceiverProcess

    @classmethod
    def setUpClass(cls) -> None:
        cls.receiver = ReceiverProcess("--max-request-bytes", str(MAX_REQUEST_BYTES))

    @classmethod
    def tearDownClass(cls) -> None:
        logs = cls.receiver.logs()
        cls.receiver.stop()
        if "Traceback" in logs or "error serving" in logs:
            raise AssertionError(f"the receiver logged an unexpected error:\n{logs}")

    def setUp(self) -> None:
        self.assertEqual(self.receiver.control("POST", "/up")[0], 200)
        self.assertEqual(self.receiver.control("POST", "/reset")[0], 200)
        self.channel = grpc.insecure_channel(self.receiver.grpc_target)
        self.addCleanup(self.channel.close)
        self.stub = service_grpc.ProfilesServiceStub(self.channel)
        self.request_bytes = valid_request().SerializeToString()

    def export_grpc(self, **kwargs: Any) -> service_pb2.ExportProfilesServiceResponse:
        return self.stub.Export(valid_request(), timeout=10, compression=grpc.Compression.Gzip, **kwargs)

    def export_http(self, headers: Optional[dict[str, str]] = None) -> tuple[int, Any, bytes]:
        return http_post(self.receiver.http_url + HTTP_PATH, gzip.compress(self.request_bytes), headers or GZIP_HEADERS)

    # -- ingest -------------------------------------------------------------------------

    def test_grpc_export_gzip(self) -> None:
        response = self.export_grpc(metadata=[("x-tenant", "acme"), ("authorization", "Bearer t")])
        self.assertEqual(response, service_pb2.ExportProfilesServiceResponse())
        self.stub.Export(valid_request(), timeout=10)  # uncompressed
        compressed, plain = self.receiver.requests()
        self.assertEqual(compressed["index"], 0)
        self.assertEqual(compressed["protocol"], "grpc")
        self.assertEqual(compressed["path"], GRPC_METHOD)
        self.assertTrue(compressed["gzip"])
        self.assertEqual(compressed["message_bytes"], len(self.request_bytes))
        self.assertLess(compressed["wire_bytes"], compressed["message_bytes"])
        self.assertEqual(compressed["headers"]["x-tenant"], "acme")
        self.assertEqual(compressed["headers"]["authorization"], "Bearer t")
        self.assertEqual(compressed["outcome"], "ok")
        self.assertEqual(compressed["violations"], [])
        self.assertEqual(compressed["summary"]["samples"], 5)
        self.assertEqual(compressed["summary"]["top_functions"][0], ["work", 7])
        self.assertFalse(plain["gzip"])
        self.assertEqual(plain["wire_bytes"], len(self.request_bytes))
        self.assertLessEqual(abs(plain["time"] - time.time()), 30)

    def test_grpc_garbage_is_invalid_argument(self) -> None:
        raw = self.channel.unary_unary(GRPC_METHOD)
        with self.assertRaises(grpc.RpcError) as caught:
            raw(b"\x0a\xff\xff\xff\xff\x0f", timeout=10)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as caught:
            raw(b"\x1f\x8b not gzip at all", timeout=10)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        records = self.receiver.requests()
        self.assertEqual([r["outcome"] for r in records], ["grpc INVALID_ARGUMENT"] * 2)
        self.assertIn("not a valid ExportProfilesServiceRequest", records[0]["decode_error"])
        self.assertTrue(records[1]["gzip"])
        # The receiver survived: a valid export still works.
        self.export_grpc()

    def test_grpc_violations_are_recorded_not_refused(self) -> None:
        request = valid_request()
        first_profile(request).profile_id = bytes(16)
        self.stub.Export(request, timeout=10)
        (record,) = self.receiver.requests()
        self.assertEqual(record["outcome"], "ok")
        self.assertEqual(len(record["violations"]), 1)
        self.assertIn("profile_id is all zero", record["violations"][0])

    def test_http_export_gzip(self) -> None:
        status, headers, body = self.export_http({**GZIP_HEADERS, "X-Tenant": "acme"})
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/x-protobuf")
        self.assertEqual(service_pb2.ExportProfilesServiceResponse.FromString(body), service_pb2.ExportProfilesServiceResponse())
        status, _, _ = http_post(self.receiver.http_url + HTTP_PATH, self.request_bytes, {"Content-Type": "application/x-protobuf; charset=binary"})
        self.assertEqual(status, 200)
        compressed, plain = self.receiver.requests()
        self.assertEqual(compressed["protocol"], "http")
        self.assertTrue(compressed["gzip"])
        self.assertEqual(compressed["headers"]["x-tenant"], "acme")
        self.assertEqual(compressed["headers"]["content-encoding"], "gzip")
        self.assertEqual(compressed["message_bytes"], len(self.request_bytes))
        self.assertEqual(compressed["outcome"], "ok")
        self.assertEqual(compressed["summary"]["resource_profiles"], 2)
        self.assertFalse(plain["gzip"])
        self.assertEqual(plain["wire_bytes"], len(self.request_bytes))

    def test_http_chunked_body(self) -> None:
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.receiver.ports["http_port"], timeout=10)
        self.addCleanup(connection.close)
        connection.request("POST", HTTP_PATH, body=iter([self.request_bytes[:100], self.request_bytes[100:]]), headers=PROTOBUF_HEADERS, encode_chunked=True)
        response = connection.getresponse()
        response.read()
        self.assertEqual(response.status, 200)
        self.assertEqual(self.receiver.requests()[0]["message_bytes"], len(self.request_bytes))

    def test_http_refusals(self) -> None:
        url = self.receiver.http_url
        cases = [
            ("wrong content type", url + HTTP_PATH, self.request_bytes, {"Content-Type": "application/json"}, 415),
            ("unknown encoding", url + HTTP_PATH, self.request_bytes, {**PROTOBUF_HEADERS, "Content-Encoding": "br"}, 415),
            ("other path", url + "/v1/traces", self.request_bytes, PROTOBUF_HEADERS, 404),
            ("garbage", url + HTTP_PATH, b"\x0a\xff\xff\xff\xff\x0f", PROTOBUF_HEADERS, 400),
            ("gzip garbage", url + HTTP_PATH, b"\x1f\x8bnope", GZIP_HEADERS, 400),
            ("too large", url + HTTP_PATH, bytes(MAX_REQUEST_BYTES + 1), PROTOBUF_HEADERS, 413),
            ("gzip bomb", url + HTTP_PATH, gzip.compress(bytes(MAX_REQUEST_BYTES * 16)), GZIP_HEADERS, 413),
        ]
        for name, target, body, headers, expected in cases:
            with self.subTest(name=name):
                status, response_headers, response_body = http_post(target, body, headers)
                self.assertEqual(status, expected)
                self.assertEqual(response_headers["Content-Type"], "application/x-protobuf")
                explanation = RpcStatus.FromString(response_body)
                self.assertTrue(explanation.message, "the body explains the refusal")
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(url + HTTP_PATH, timeout=10)
        self.assertEqual(caught.exception.code, 405)
        caught.exception.close()
        outcomes = [record["outcome"] for record in self.receiver.requests()]
        self.assertEqual(outcomes, [f"http {case[-1]}" for case in cases] + ["http 405"])

    def test_last_request(self) -> None:
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(self.receiver.control_url + "/last-request", timeout=10)
        self.assertEqual(caught.exception.code, 404)
        caught.exception.close()
        self.export_grpc()
        with urllib.request.urlopen(self.receiver.control_url + "/last-request", timeout=10) as response:
            self.assertEqual(response.headers["X-Request-Index"], "0")
            self.assertEqual(service_pb2.ExportProfilesServiceRequest.FromString(response.read()), valid_request())

    # -- faults -------------------------------------------------------------------------

    def test_grpc_unavailable_with_retry_info(self) -> None:
        self.receiver.faults({"grpc_status": "UNAVAILABLE", "message": "try later", "retry_delay_seconds": 2.5})
        with self.assertRaises(grpc.RpcError) as caught:
            self.export_grpc()
        error = caught.exception
        self.assertEqual(error.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(error.details(), "try later")
        trailers = dict(error.trailing_metadata())
        status = RpcStatus.FromString(trailers["grpc-status-details-bin"])
        self.assertEqual(status.code, grpc.StatusCode.UNAVAILABLE.value[0])
        self.assertEqual(status.message, "try later")
        (detail,) = status.details
        self.assertEqual(detail.type_url, "type.googleapis.com/google.rpc.RetryInfo")
        retry_info = RetryInfo.FromString(detail.value)
        self.assertEqual((retry_info.retry_delay.seconds, retry_info.retry_delay.nanos), (2, 500_000_000))
        self.export_grpc()  # the fault was consumed
        failed, succeeded = self.receiver.requests()
        self.assertEqual(failed["outcome"], "grpc UNAVAILABLE")
        self.assertEqual(failed["fault"]["grpc_status"], "UNAVAILABLE")
        self.assertEqual(failed["summary"]["samples"], 5, "a fault-answered request is still decoded")
        self.assertEqual(succeeded["outcome"], "ok")

    def test_grpc_status_without_retry_info(self) -> None:
        self.receiver.faults({"grpc_status": "RESOURCE_EXHAUSTED"}, {"grpc_status": "invalid_argument", "message": "bad"})
        for expected in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT):
            with self.assertRaises(grpc.RpcError) as caught:
                self.export_grpc()
            self.assertEqual(caught.exception.code(), expected)
            self.assertNotIn("grpc-status-details-bin", dict(caught.exception.trailing_metadata() or ()))

    def test_http_status_with_retry_after(self) -> None:
        self.receiver.faults(
            {"http_status": 429, "retry_after": "3", "body": "slow down"},
            {"http_status": 503, "retry_after": "Wed, 21 Oct 2037 07:28:00 GMT", "message": "maintenance"},
        )
        status, headers, body = self.export_http()
        self.assertEqual((status, headers["Retry-After"], body), (429, "3", b"slow down"))
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        status, headers, body = self.export_http()
        self.assertEqual((status, headers["Retry-After"]), (503, "Wed, 21 Oct 2037 07:28:00 GMT"))
        self.assertEqual(RpcStatus.FromString(body).message, "maintenance")
        self.assertEqual(self.export_http()[0], 200)
        self.assertEqual([r["outcome"] for r in self.receiver.requests()], ["http 429", "http 503", "ok"])

    def test_partial_success_both_protocols(self) -> None:
        partial = {"partial_success": {"rejected_profiles": 5, "error_message": "too old"}}
        self.receiver.faults(partial, partial)
        response = self.export_grpc()
        self.assertEqual((response.partial_success.rejected_profiles, response.partial_success.error_message), (5, "too old"))
        status, _, body = self.export_http()
        self.assertEqual(status, 200)
        response = service_pb2.ExportProfilesServiceResponse.FromString(body)
        self.assertEqual((response.partial_success.rejected_profiles, response.partial_success.error_message), (5, "too old"))
        self.assertEqual([r["outcome"] for r in self.receiver.requests()], ["partial", "partial"])

    def test_faults_match_their_protocol(self) -> None:
        self.receiver.faults({"http_status": 503}, {"grpc_status": "UNAVAILABLE"})
        self.assertEqual(self.receiver.control("GET", "/faults")[1][0]["protocol"], "http")
        with self.assertRaises(grpc.RpcError):
            self.export_grpc()  # takes the gRPC fault, skipping the HTTP one
        self.assertEqual(self.export_http()[0], 503)
        self.export_grpc()
        self.assertEqual(self.export_http()[0], 200)
        self.assertEqual(self.receiver.control("GET", "/status")[1]["pending_faults"], 0)

    def test_delay(self) -> None:
        self.receiver.faults({"delay_seconds": 0.4}, {"delay_seconds": 0.4, "http_status": 504})
        started = time.monotonic()
        self.export_grpc()
        self.assertGreaterEqual(time.monotonic() - started, 0.4)
        started = time.monotonic()
        self.assertEqual(self.export_http()[0], 504)
        self.assertGreaterEqual(time.monotonic() - started, 0.4)

    def test_bad_faults_are_refused(self) -> None:
        bad = [
            {"grpc_status": "NOT_A_CODE"},
            {"grpc_status": "OK"},
            {"http_status": 200},
            {"http_status": "503"},
            {"retry_after": "3"},
            {"grpc_status": "UNAVAILABLE", "protocol": "http"},
            {"http_status": 503, "protocol": "grpc"},
            {"partial_success": {"rejected_profiles": -1}},
            {"partial_success": {}, "http_status": 503},
            {"delay_seconds": -1},
            {"delay_seconds": float("inf")},
            {"surprise": True},
            {},
            "UNAVAILABLE",
        ]
        for fault in bad:
            with self.subTest(fault=fault):
                status, body = self.receiver.control("POST", "/faults", [{"grpc_status": "UNAVAILABLE"}, fault])
                self.assertEqual(status, 400, body)
                self.assertIn("error", body)
        self.assertEqual(self.receiver.control("GET", "/faults")[1], [], "a refused list adds nothing")

    # -- control API --------------------------------------------------------------------

    def test_requests_since_and_reset(self) -> None:
        for _ in range(3):
            self.export_grpc()
        self.assertEqual([r["index"] for r in self.receiver.requests(since=1)], [1, 2])
        self.assertEqual(self.receiver.control("GET", "/requests?since=x")[0], 400)
        self.receiver.faults({"delay_seconds": 1})
        status = self.receiver.control("POST", "/reset")[1]
        self.assertEqual((status["requests_recorded"], status["pending_faults"]), (0, 0))
        self.assertEqual(self.receiver.requests(), [])
        self.export_grpc()
        self.assertEqual(self.receiver.requests()[0]["index"], 0)
        self.assertEqual(self.receiver.control("GET", "/nope")[0], 404)

    def test_down_and_up(self) -> None:
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.receiver.ports["http_port"], timeout=10)
        self.addCleanup(connection.close)
        connection.request("POST", HTTP_PATH, body=self.request_bytes, headers=PROTOBUF_HEADERS)
        self.assertEqual(connection.getresponse().read(), b"")

        status, body = self.receiver.control("POST", "/down", {})
        self.assertEqual(status, 200)
        self.assertFalse(body["ingest_up"])
        self.assertIsNone(body["up_at"])
        with self.assertRaises(grpc.RpcError) as caught:
            self.export_grpc()
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAVAILABLE)
        with self.assertRaises(urllib.error.URLError) as refused:
            self.export_http()
        self.assertIsInstance(refused.exception.reason, ConnectionRefusedError)
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            # The kept-alive connection was closed by /down.
            connection.request("POST", HTTP_PATH, body=self.request_bytes, headers=PROTOBUF_HEADERS)
            connection.getresponse()

        status, body = self.receiver.control("POST", "/up")
        self.assertTrue(body["ingest_up"])
        self.assertEqual((body["grpc_port"], body["http_port"]), (self.receiver.ports["grpc_port"], self.receiver.ports["http_port"]))
        # A fresh subchannel: the shared one is still backing off from the refused connects.
        with grpc.insecure_channel(self.receiver.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            service_grpc.ProfilesServiceStub(channel).Export(valid_request(), timeout=10)
        self.assertEqual(self.export_http()[0], 200)

    def test_down_for_seconds_reopens(self) -> None:
        status, body = self.receiver.control("POST", "/down", {"seconds": 0.3})
        self.assertFalse(body["ingest_up"])
        self.assertGreater(body["up_at"], time.time())
        with self.assertRaises(urllib.error.URLError):
            self.export_http()
        deadline = time.monotonic() + 5
        while not self.receiver.control("GET", "/status")[1]["ingest_up"]:
            self.assertLess(time.monotonic(), deadline, "ingest did not come back")
            time.sleep(0.05)
        self.assertEqual(self.export_http()[0], 200)
        self.assertEqual(self.receiver.control("POST", "/down", {"seconds": "soon"})[0], 400)


class ReceiverLifecycleTest(unittest.TestCase):
    def test_sigterm_and_sigint_exit_promptly(self) -> None:
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=signal_number):
                receiver = ReceiverProcess()
                receiver.faults({"delay_seconds": 60})
                # A stalled export must not hold the exit up.
                stalled = threading.Thread(target=lambda: http_post(receiver.http_url + HTTP_PATH, b"", PROTOBUF_HEADERS))
                stalled.daemon = True
                stalled.start()
                time.sleep(0.2)
                started = time.monotonic()
                receiver.process.send_signal(signal_number)
                self.assertEqual(receiver.process.wait(timeout=5), 0)
                self.assertLess(time.monotonic() - started, 3)
                self.assertNotIn("Traceback", receiver.logs())
                receiver.stop()

    def test_bad_command_lines(self) -> None:
        for args in (["--grpc-port", "0"], ["--grpc-port", "0", "--http-port", "0", "--control-port", "0", "--tls-cert", "x"]):
            process = subprocess.run([sys.executable, RECEIVER, *args], capture_output=True, text=True, timeout=30)
            self.assertEqual(process.returncode, 2)
            self.assertEqual(process.stdout, "")

    def test_port_in_use_fails_cleanly(self) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            process = subprocess.run(
                [sys.executable, RECEIVER, "--grpc-port", "0", "--http-port", str(port), "--control-port", "0"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        self.assertEqual(process.returncode, 1)
        self.assertEqual(process.stdout, "")
        self.assertIn("cannot start", process.stderr)


@unittest.skipUnless(shutil.which("openssl"), "openssl is needed to make test certificates")
class ReceiverTlsTest(unittest.TestCase):
    """mTLS on both protocols with throwaway certificates (CA, server, client)."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.directory = tempfile.mkdtemp(prefix="otlp-tls-")
        files = {name: os.path.join(cls.directory, name) for name in ("ca.key", "ca.pem", "server.key", "server.pem", "client.key", "client.pem")}
        cls.files = files

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)

        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        openssl("req", "-x509", *ec, "-keyout", files["ca.key"], "-out", files["ca.pem"], "-subj", "/CN=test-ca", "-days", "1",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        for name, extensions in (
            ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ):
            csr = os.path.join(cls.directory, f"{name}.csr")
            extfile = os.path.join(cls.directory, f"{name}.ext")
            with open(extfile, "w") as file:
                file.write(extensions)
            openssl("req", "-new", *ec, "-keyout", files[f"{name}.key"], "-out", csr, "-subj", f"/CN=test-{name}")
            openssl("x509", "-req", "-in", csr, "-CA", files["ca.pem"], "-CAkey", files["ca.key"], "-CAcreateserial",
                    "-out", files[f"{name}.pem"], "-days", "1", "-extfile", extfile)
        cls.receiver = ReceiverProcess(
            "--tls-cert", files["server.pem"], "--tls-key", files["server.key"], "--tls-client-ca", files["ca.pem"]
        )

    @classmethod
    def tearDownClass(cls) -> None:
        cls.receiver.stop()
        shutil.rmtree(cls.directory)

    def read(self, name: str) -> bytes:
        with open(self.files[name], "rb") as file:
            return file.read()

    def ssl_context(self, client_cert: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.files["ca.pem"])
        if client_cert:
            context.load_cert_chain(self.files["client.pem"], self.files["client.key"])
        return context

    def test_grpc_mtls(self) -> None:
        credentials = grpc.ssl_channel_credentials(self.read("ca.pem"), self.read("client.key"), self.read("client.pem"))
        with grpc.secure_channel(f"127.0.0.1:{self.receiver.ports['grpc_port']}", credentials) as channel:
            service_grpc.ProfilesServiceStub(channel).Export(valid_request(), timeout=10, compression=grpc.Compression.Gzip)
        without_client_cert = grpc.ssl_channel_credentials(self.read("ca.pem"))
        with grpc.secure_channel(f"127.0.0.1:{self.receiver.ports['grpc_port']}", without_client_cert) as channel:
            with self.assertRaises(grpc.RpcError) as caught:
                service_grpc.ProfilesServiceStub(channel).Export(valid_request(), timeout=10)
            self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAVAILABLE)
        record = [r for r in self.receiver.requests() if r["protocol"] == "grpc"][-1]
        self.assertTrue(record["tls"])
        self.assertTrue(record["gzip"])
        self.assertEqual(record["client_cert_cn"], "test-client")

    def test_http_mtls(self) -> None:
        url = f"https://127.0.0.1:{self.receiver.ports['http_port']}{HTTP_PATH}"
        body = gzip.compress(valid_request().SerializeToString())
        status, _, _ = http_post(url, body, GZIP_HEADERS, context=self.ssl_context(client_cert=True))
        self.assertEqual(status, 200)
        with self.assertRaises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            http_post(url, body, GZIP_HEADERS, context=self.ssl_context(client_cert=False))
        record = [r for r in self.receiver.requests() if r["protocol"] == "http"][-1]
        self.assertEqual((record["tls"], record["client_cert_cn"], record["outcome"]), (True, "test-client", "ok"))
        # The control API stays plain HTTP.
        self.assertEqual(self.receiver.control("GET", "/status")[1]["tls"], True)


if __name__ == "__main__":
    unittest.main()
