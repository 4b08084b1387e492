"""Conformance checks and summaries for OTLP profiles export requests.

Implements the rules of the OTLP profiles data model (opentelemetry-proto
v1.10.0+, opentelemetry/proto/profiles/v1development/profiles.proto: the dictionary
rules, the profile and sample rules and the checkable semantic conventions) against a decoded
`ExportProfilesServiceRequest`, and summarizes a request as JSON-able data (counts,
weights, resource attributes, hottest leaf functions).

`check()` returns human-readable violation strings, each naming the rule and the offending
path, e.g. `location_table[7].mapping_index 12 out of range (mapping_table has 5 entries)`.
It never raises on a decoded message and reports at most `max_violations` entries plus a
final "... N more violations" line, so a hostile payload cannot make it allocate without
bound. Our producer must emit no duplicates and no orphans, so those are violations here
even though the protocol tolerates them.

The module also holds the small decoding helpers that check.py and receiver.py share
(bounded gunzip, request decoding).
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Iterable, Optional, Sequence

from google.protobuf import message as protobuf_message
from google.protobuf import unknown_fields
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.profiles.v1development import profiles_pb2

DEFAULT_MAX_VIOLATIONS = 200

BUILD_ID_KEYS = (
    "process.executable.build_id.gnu",
    "process.executable.build_id.go",
    "process.executable.build_id.htlhash",
)
FRAME_TYPE_KEY = "profile.frame.type"
FRAME_TYPES = frozenset(
    {"native", "kernel", "go", "rust", "cpython", "jvm", "v8js", "ruby", "php", "perl", "dotnet", "beam"}
)
# Attribute keys whose value must be an int (semantic conventions).
INT_KEYS = frozenset({"thread.id", "cpu.logical_number", "process.pid"})
# Attribute keys whose value must be a string (semantic conventions).
STRING_KEYS = frozenset({"thread.name"}) | frozenset(BUILD_ID_KEYS)

# Deepest AnyValue nesting (arrays / kvlists) walked; the protobuf decoder itself stops at 100.
MAX_VALUE_DEPTH = 64
# Longest string quoted inside a violation message.
MAX_QUOTED = 80

# Summary bounds: the receiver stores a summary per request.
SUMMARY_TOP_FUNCTIONS = 100
SUMMARY_TOP_FUNCTIONS_PER_RESOURCE = 50
SUMMARY_MAX_RESOURCES = 256
SUMMARY_MAX_ATTRIBUTES = 128  # also the most array / kvlist elements converted
SUMMARY_MAX_DEPTH = 8  # deepest array / kvlist nesting converted
SUMMARY_MAX_STRING = 1024

_TABLES = (
    "mapping_table",
    "location_table",
    "function_table",
    "link_table",
    "string_table",
    "attribute_table",
    "stack_table",
)


# ---------------------------------------------------------------------------------------
# Decoding helpers (shared by check.py and receiver.py)


class PayloadTooLarge(ValueError):
    """The (decompressed) payload exceeds the configured limit."""


GZIP_MAGIC = b"\x1f\x8b"


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompresses gzip `data` (one or more members) without producing more than `limit` bytes.

    Raises PayloadTooLarge when the output would exceed `limit`, ValueError for corrupt or
    truncated input.
    """
    out = bytearray()
    remaining = data
    while True:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += decompressor.decompress(remaining, limit - len(out) + 1)
        except zlib.error as error:
            raise ValueError(f"corrupt gzip data: {error}") from None
        if len(out) > limit or decompressor.unconsumed_tail:
            raise PayloadTooLarge(f"gzip data expands to more than {limit} bytes")
        if not decompressor.eof:
            raise ValueError("truncated gzip data (stream ends before the gzip trailer)")
        remaining = decompressor.unused_data
        if not remaining.strip(b"\x00"):
            return bytes(out)
        if not remaining.startswith(GZIP_MAGIC):
            raise ValueError(f"{len(remaining)} bytes of trailing garbage after the gzip data")


def decode_request(data: bytes) -> ExportProfilesServiceRequest:
    """Parses a serialized ExportProfilesServiceRequest; raises ValueError when it is not one."""
    request = ExportProfilesServiceRequest()
    try:
        request.ParseFromString(data)
    except protobuf_message.DecodeError as error:
        raise ValueError(f"not a valid ExportProfilesServiceRequest: {error}") from None
    except RecursionError:
        raise ValueError("not a valid ExportProfilesServiceRequest: nested too deeply") from None
    return request


def looks_like_garbage(data: bytes, request: ExportProfilesServiceRequest) -> bool:
    """True when non-empty bytes decoded to nothing but unknown fields (random bytes often do)."""
    return bool(data) and not request.resource_profiles and not request.HasField("dictionary")


# ---------------------------------------------------------------------------------------
# Attribute values


def _quote(text: str) -> str:
    """repr() of a string, shortened so a hostile value cannot bloat a violation message."""
    if len(text) > MAX_QUOTED:
        return repr(text[:MAX_QUOTED]) + f"...({len(text)} chars)"
    return repr(text)


def any_value_to_python(value: common_pb2.AnyValue, strings: Sequence[str], depth: int = 0) -> Any:
    """Converts an AnyValue to a JSON-able Python value.

    Strings longer than SUMMARY_MAX_STRING are cut, bytes become lowercase hex, non-finite
    doubles become strings, string_value_strindex is resolved through `strings`; arrays
    and kvlists keep their first SUMMARY_MAX_ATTRIBUTES elements and SUMMARY_MAX_DEPTH
    levels.
    """
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return value.string_value[:SUMMARY_MAX_STRING]
    if kind == "string_value_strindex":
        index = value.string_value_strindex
        if 0 <= index < len(strings):
            return strings[index][:SUMMARY_MAX_STRING]
        return f"[string index {index} out of range]"
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else str(number)
    if kind == "bytes_value":
        return value.bytes_value[: SUMMARY_MAX_STRING // 2].hex()
    if depth >= SUMMARY_MAX_DEPTH:
        return "[nested too deeply]"
    if kind == "array_value":
        items = value.array_value.values[:SUMMARY_MAX_ATTRIBUTES]
        return [any_value_to_python(item, strings, depth + 1) for item in items]
    if kind == "kvlist_value":
        pairs = value.kvlist_value.values[:SUMMARY_MAX_ATTRIBUTES]
        return {_key_of(pair, strings)[:SUMMARY_MAX_STRING]: any_value_to_python(pair.value, strings, depth + 1) for pair in pairs}
    return None


def _key_of(pair: common_pb2.KeyValue, strings: Sequence[str]) -> str:
    """The key of a KeyValue: `key`, or the string `key_strindex` names."""
    if pair.key or pair.key_strindex == 0:
        return pair.key
    if 0 <= pair.key_strindex < len(strings):
        return strings[pair.key_strindex]
    return f"[string index {pair.key_strindex} out of range]"


def _string_of(value: common_pb2.AnyValue, strings: Sequence[str]) -> Optional[str]:
    """The string an AnyValue holds (directly or through the string table), else None."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "string_value_strindex" and 0 <= value.string_value_strindex < len(strings):
        return strings[value.string_value_strindex]
    return None


# ---------------------------------------------------------------------------------------
# Checker


class _Violations:
    """Collects violation messages, keeping at most `limit` of them (formatted lazily)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.messages: list[str] = []
        self.total = 0

    def add(self, template: str, *args: Any) -> None:
        self.total += 1
        if len(self.messages) < self.limit:
            self.messages.append(template % args if args else template)

    def result(self) -> list[str]:
        messages = list(self.messages)
        if self.total > len(messages):
            messages.append(f"... {self.total - len(messages)} more violations")
        return messages


def _unknown_field_numbers(msg: protobuf_message.Message) -> list[int]:
    try:
        return sorted({field.field_number for field in unknown_fields.UnknownFieldSet(msg)})
    except Exception:  # pragma: no cover - API differences across protobuf versions
        return []


class _Checker:
    """One pass over a request; see check()."""

    def __init__(self, request: ExportProfilesServiceRequest, max_violations: int) -> None:
        self.request = request
        self.v = _Violations(max_violations)
        self.has_dictionary = request.HasField("dictionary")
        d = request.dictionary
        self.d = d
        self.strings: list[str] = list(d.string_table)
        self.sizes = {name: len(getattr(d, name)) for name in _TABLES}
        # One flag per table entry: set when anything references it (orphan detection).
        self.refs = {name: bytearray(size) for name, size in self.sizes.items()}
        # Resolved key string of every attribute_table entry (None when key_strindex is bad).
        self.attr_keys: list[Optional[str]] = []
        # (key, serialized value) of every attribute_table entry, for the sample merge rule.
        self.attr_identity: list[Optional[tuple[str, bytes]]] = []

    # -- helpers ------------------------------------------------------------------------

    def index(self, table: str, value: int, path: str, allow_zero: bool = True) -> bool:
        """Checks that `value` indexes `table`; marks the entry referenced. True when valid."""
        size = self.sizes[table]
        if not 0 <= value < size:
            self.v.add("%s %d out of range (%s has %d entries)", path, value, table, size)
            return False
        if value == 0 and not allow_zero:
            self.v.add("%s is 0, the unset %s entry, inside a list", path, table)
        self.refs[table][value] = 1
        return True

    def strindex(self, value: int, path: str) -> Optional[str]:
        """Checks a string_table index; returns the string when valid."""
        if self.index("string_table", value, path):
            return self.strings[value]
        return None

    def attribute_list(self, indices: Iterable[int], path: str) -> list[int]:
        """Checks one attribute_indices list (range, unset entry, unique keys); returns valid indices."""
        seen: dict[str, int] = {}
        valid: list[int] = []
        for position, index in enumerate(indices):
            if not self.index("attribute_table", index, f"{path}.attribute_indices[{position}]", allow_zero=False):
                continue
            valid.append(index)
            key = self.attr_keys[index] if index < len(self.attr_keys) else None
            if key is None:
                continue
            if key in seen:
                self.v.add(
                    "%s.attribute_indices has duplicate key %s (positions %d and %d)",
                    path,
                    _quote(key),
                    seen[key],
                    position,
                )
            else:
                seen[key] = position
        return valid

    def any_value(self, value: common_pb2.AnyValue, path: str, depth: int = 0) -> None:
        """Checks the string indexes inside an AnyValue (string_value_strindex, nested keys)."""
        kind = value.WhichOneof("value")
        if kind == "string_value_strindex":
            self.strindex(value.string_value_strindex, f"{path}.string_value_strindex")
        elif kind in ("array_value", "kvlist_value"):
            if depth >= MAX_VALUE_DEPTH:
                self.v.add("%s nests arrays/kvlists deeper than %d levels", path, MAX_VALUE_DEPTH)
            elif kind == "array_value":
                for i, item in enumerate(value.array_value.values):
                    self.any_value(item, f"{path}.array_value[{i}]", depth + 1)
            else:
                self.key_values(value.kvlist_value.values, f"{path}.kvlist_value", depth + 1)

    def key_values(self, pairs: Sequence[common_pb2.KeyValue], path: str, depth: int = 0) -> dict[str, common_pb2.AnyValue]:
        """Checks a KeyValue list (key xor key_strindex, indexes, unique keys); returns key -> value."""
        seen: dict[str, int] = {}
        result: dict[str, common_pb2.AnyValue] = {}
        for i, pair in enumerate(pairs):
            item = f"{path}[{i}]"
            if pair.key and pair.key_strindex != 0:
                self.v.add("%s sets both key and key_strindex (they are exclusive)", item)
            if pair.key_strindex != 0:
                key = self.strindex(pair.key_strindex, f"{item}.key_strindex")
            else:
                key = pair.key
            self.any_value(pair.value, f"{item}.value", depth)
            if key is None:
                continue
            if key in seen:
                self.v.add("%s has duplicate key %s (entries %d and %d)", path, _quote(key), seen[key], i)
            else:
                seen[key] = i
                result[key] = pair.value
        return result

    def semantic_value(self, key: str, value: common_pb2.AnyValue, path: str) -> None:
        """Checks the value type/content the semantic conventions require for `key`."""
        kind = value.WhichOneof("value")
        if key in INT_KEYS:
            if kind != "int_value":
                self.v.add("%s: %s must be an int value, not %s", path, key, kind or "unset")
        elif key == FRAME_TYPE_KEY:
            text = _string_of(value, self.strings)
            if text is None:
                self.v.add("%s: %s must be a string value, not %s", path, key, kind or "unset")
            elif text not in FRAME_TYPES:
                self.v.add("%s: %s value %s is not one of %s", path, key, _quote(text), ", ".join(sorted(FRAME_TYPES)))
        elif key in STRING_KEYS:
            text = _string_of(value, self.strings)
            if text is None:
                self.v.add("%s: %s must be a string value, not %s", path, key, kind or "unset")
            elif key in BUILD_ID_KEYS and not text:
                self.v.add("%s: %s is empty", path, key)
            elif key == "process.executable.build_id.htlhash" and (
                len(text) != 32 or any(c not in "0123456789abcdef" for c in text)
            ):
                self.v.add("%s: %s value %s is not 32 lowercase hex digits", path, key, _quote(text))

    # -- passes -------------------------------------------------------------------------

    def run(self) -> list[str]:
        extra = _unknown_field_numbers(self.request)
        if extra:
            self.v.add("request has unknown fields (field numbers %s)", ", ".join(map(str, extra[:10])))
        self.check_dictionary()
        for i, resource_profiles in enumerate(self.request.resource_profiles):
            self.check_resource_profiles(resource_profiles, f"resource_profiles[{i}]")
        self.check_orphans()
        return self.v.result()

    def check_dictionary(self) -> None:
        d, v = self.d, self.v
        if not self.has_dictionary:
            v.add("dictionary is missing")
        extra = _unknown_field_numbers(d)
        if extra:
            v.add("dictionary has unknown fields (field numbers %s)", ", ".join(map(str, extra[:10])))
        for name in _TABLES:
            if self.sizes[name] == 0:
                v.add("dictionary.%s is empty (entry 0 must be the zero value)", name)
            else:
                self.refs[name][0] = 1  # entry 0 means "unset": never an orphan

        # Entry 0 is the zero value of each table.
        if self.strings and self.strings[0] != "":
            v.add("string_table[0] is %s, must be the empty string", _quote(self.strings[0]))
        for name in ("mapping_table", "location_table", "function_table", "stack_table", "attribute_table"):
            table = getattr(d, name)
            if table and table[0].ByteSize() != 0:
                v.add("%s[0] is not the all-default (zero) message", name)
        if d.link_table:
            link = d.link_table[0]
            if link.trace_id not in (b"", bytes(16)) or link.span_id not in (b"", bytes(8)):
                v.add("link_table[0] must have all-zero ids (16-byte trace_id, 8-byte span_id)")

        # Attribute table first: lists elsewhere need each entry's key.
        for i, attribute in enumerate(d.attribute_table):
            path = f"attribute_table[{i}]"
            key = self.strindex(attribute.key_strindex, f"{path}.key_strindex")
            self.strindex(attribute.unit_strindex, f"{path}.unit_strindex")
            self.any_value(attribute.value, f"{path}.value")
            self.attr_keys.append(key)
            self.attr_identity.append(
                None if key is None else (key, attribute.value.SerializeToString(deterministic=True))
            )
            if i == 0:
                continue
            if key == "":
                v.add("%s has an empty key", path)
            elif key is not None:
                self.semantic_value(key, attribute.value, path)

        for i, mapping in enumerate(d.mapping_table):
            path = f"mapping_table[{i}]"
            self.strindex(mapping.filename_strindex, f"{path}.filename_strindex")
            attributes = self.attribute_list(mapping.attribute_indices, path)
            if not (mapping.memory_start == 0 and mapping.memory_limit == 0) and not (
                mapping.memory_start < mapping.memory_limit
            ):
                v.add(
                    "%s memory_start 0x%x must be < memory_limit 0x%x (or both 0)",
                    path,
                    mapping.memory_start,
                    mapping.memory_limit,
                )
            if i > 0 and not any(self.attr_keys[a] in BUILD_ID_KEYS for a in attributes):
                v.add("%s carries none of the attributes %s", path, ", ".join(BUILD_ID_KEYS))

        for i, location in enumerate(d.location_table):
            path = f"location_table[{i}]"
            self.index("mapping_table", location.mapping_index, f"{path}.mapping_index")
            for j, line in enumerate(location.lines):
                line_path = f"{path}.lines[{j}]"
                self.index("function_table", line.function_index, f"{line_path}.function_index")
                if line.line < 0:
                    v.add("%s.line %d is negative", line_path, line.line)
                if line.column < 0:
                    v.add("%s.column %d is negative", line_path, line.column)
            self.attribute_list(location.attribute_indices, path)

        for i, function in enumerate(d.function_table):
            path = f"function_table[{i}]"
            self.strindex(function.name_strindex, f"{path}.name_strindex")
            self.strindex(function.system_name_strindex, f"{path}.system_name_strindex")
            self.strindex(function.filename_strindex, f"{path}.filename_strindex")
            if function.start_line < 0:
                v.add("%s.start_line %d is negative", path, function.start_line)

        for i, link in enumerate(d.link_table):
            if i == 0:
                continue
            if len(link.trace_id) != 16:
                v.add("link_table[%d].trace_id is %d bytes, must be 16", i, len(link.trace_id))
            if len(link.span_id) != 8:
                v.add("link_table[%d].span_id is %d bytes, must be 8", i, len(link.span_id))

        for i, stack in enumerate(d.stack_table):
            for j, location_index in enumerate(stack.location_indices):
                self.index(
                    "location_table", location_index, f"stack_table[{i}].location_indices[{j}]", allow_zero=False
                )

        self.check_duplicates()

    def check_duplicates(self) -> None:
        """Reports entries equal to an earlier entry of the same table (entry 0 included)."""
        first: dict[Any, int] = {}
        for i, text in enumerate(self.strings):
            previous = first.setdefault(text, i)
            if previous != i:
                self.v.add("string_table[%d] duplicates string_table[%d] (%s)", i, previous, _quote(text))
        for name in _TABLES:
            if name == "string_table":
                continue
            first = {}
            for i, entry in enumerate(getattr(self.d, name)):
                previous = first.setdefault(entry.SerializeToString(deterministic=True), i)
                if previous != i:
                    self.v.add("%s[%d] duplicates %s[%d]", name, i, name, previous)

    def check_resource_profiles(self, resource_profiles: profiles_pb2.ResourceProfiles, path: str) -> None:
        attributes = self.key_values(resource_profiles.resource.attributes, f"{path}.resource.attributes")
        for key, value in attributes.items():
            if key in INT_KEYS:
                self.semantic_value(key, value, f"{path}.resource.attributes")
        for i, scope_profiles in enumerate(resource_profiles.scope_profiles):
            scope_path = f"{path}.scope_profiles[{i}]"
            self.key_values(scope_profiles.scope.attributes, f"{scope_path}.scope.attributes")
            for j, profile in enumerate(scope_profiles.profiles):
                self.check_profile(profile, f"{scope_path}.profiles[{j}]")

    def value_type(self, value_type: profiles_pb2.ValueType, path: str) -> tuple[Optional[str], Optional[str]]:
        return (
            self.strindex(value_type.type_strindex, f"{path}.type_strindex"),
            self.strindex(value_type.unit_strindex, f"{path}.unit_strindex"),
        )

    def check_profile(self, profile: profiles_pb2.Profile, path: str) -> None:
        v = self.v
        extra = _unknown_field_numbers(profile)
        if extra:
            v.add("%s has unknown fields (field numbers %s)", path, ", ".join(map(str, extra[:10])))

        # sample_type / period_type and their conventions.
        if not profile.HasField("sample_type"):
            v.add("%s.sample_type is not set", path)
            sample_type = (None, None)
        else:
            sample_type = self.value_type(profile.sample_type, f"{path}.sample_type")
            if profile.sample_type.type_strindex == 0:
                v.add("%s.sample_type.type_strindex is 0 (no type name)", path)
        period_type = (None, None)
        if profile.HasField("period_type"):
            period_type = self.value_type(profile.period_type, f"{path}.period_type")
        if sample_type[0] == "samples":
            if sample_type[1] != "count":
                v.add("%s.sample_type samples must have unit count, not %s", path, _quote(str(sample_type[1])))
            if period_type != ("cpu", "nanoseconds"):
                v.add("%s.period_type must be cpu/nanoseconds for sample_type samples/count", path)
            if profile.period <= 0:
                v.add("%s.period %d must be > 0 (1e9 / frequency)", path, profile.period)
        elif sample_type[0] == "off_cpu" and sample_type[1] != "nanoseconds":
            v.add("%s.sample_type off_cpu must have unit nanoseconds, not %s", path, _quote(str(sample_type[1])))

        if len(profile.profile_id) != 16:
            v.add("%s.profile_id is %d bytes, must be 16", path, len(profile.profile_id))
        elif profile.profile_id == bytes(16):
            v.add("%s.profile_id is all zero", path)
        if bool(profile.original_payload_format) != bool(profile.original_payload):
            v.add("%s: original_payload_format and original_payload must be set both or neither", path)
        self.attribute_list(profile.attribute_indices, path)

        start = profile.time_unix_nano
        end = start + profile.duration_nano
        shape: Optional[str] = None
        shape_sample = -1
        merge_keys: dict[tuple[int, int, frozenset], int] = {}
        for i, sample in enumerate(profile.samples):
            sample_path = f"{path}.samples[{i}]"
            stack_ok = self.index("stack_table", sample.stack_index, f"{sample_path}.stack_index")
            link_ok = self.index("link_table", sample.link_index, f"{sample_path}.link_index")
            attributes = self.attribute_list(sample.attribute_indices, sample_path)

            values = len(sample.values)
            timestamps = len(sample.timestamps_unix_nano)
            if values == 0 and timestamps == 0:
                v.add("%s has neither values nor timestamps", sample_path)
                this_shape = "empty"
            elif values and timestamps:
                if values != timestamps:
                    v.add("%s has %d values but %d timestamps (must be equal)", sample_path, values, timestamps)
                this_shape = "values+timestamps"
            elif values:
                if values != 1:
                    v.add("%s has %d values and no timestamps (exactly 1 expected)", sample_path, values)
                this_shape = "values"
            else:
                this_shape = "timestamps"
            if shape is None:
                shape, shape_sample = this_shape, i
            elif this_shape != shape:
                v.add(
                    "%s has shape %s but samples[%d] has shape %s (all samples of a profile use one shape)",
                    sample_path,
                    this_shape,
                    shape_sample,
                    shape,
                )

            for j, timestamp in enumerate(sample.timestamps_unix_nano):
                if not start <= timestamp < end:
                    v.add(
                        "%s.timestamps_unix_nano[%d] %d outside [time_unix_nano %d, +duration_nano %d)",
                        sample_path,
                        j,
                        timestamp,
                        start,
                        profile.duration_nano,
                    )

            if stack_ok and link_ok and len(attributes) == len(sample.attribute_indices):
                identities = [self.attr_identity[a] for a in attributes]
                if all(identity is not None for identity in identities):
                    key = (sample.stack_index, sample.link_index, frozenset(identities))
                    previous = merge_keys.setdefault(key, i)
                    if previous != i:
                        v.add(
                            "%s has the same stack, attributes and link as samples[%d] (should be merged)",
                            sample_path,
                            previous,
                        )

    def check_orphans(self) -> None:
        """Reports table entries (index >= 1) that nothing in the request references."""
        for name in _TABLES:
            flags = self.refs[name]
            position = flags.find(0, 1)
            while position != -1:
                self.v.add("%s[%d] is an orphan (nothing references it)", name, position)
                position = flags.find(0, position + 1)


def check(request: ExportProfilesServiceRequest, max_violations: int = DEFAULT_MAX_VIOLATIONS) -> list[str]:
    """Returns the conformance violations of `request` (empty when it conforms).

    At most `max_violations` messages are returned, followed by "... N more violations"
    when there were more. Never raises for a decoded message.
    """
    try:
        return _Checker(request, max_violations).run()
    except Exception as error:  # a checker bug must not take a receiver down
        return [f"internal checker error: {type(error).__name__}: {error}"]


# ---------------------------------------------------------------------------------------
# Summary


def _sample_weight(sample: profiles_pb2.Sample) -> int:
    """Sum of the values when present, else the number of timestamps."""
    if sample.values:
        return sum(sample.values)
    return len(sample.timestamps_unix_nano)


def _top(weights: dict[str, int], limit: int) -> list[list[Any]]:
    ranked = sorted(weights.items(), key=lambda item: (-item[1], item[0]))
    return [[name, weight] for name, weight in ranked[:limit]]


def summarize(request: ExportProfilesServiceRequest) -> dict[str, Any]:
    """Summarizes a request as JSON-able data.

    Keys: resource_profiles, profiles, samples, total_weight (sum of values, or the number
    of timestamps for samples without values), weight_by_sample_type ("type/unit" ->
    weight), resources (per ResourceProfiles: attributes as key -> value, profiles, samples,
    weight, first_timestamp_unix_nano and last_timestamp_unix_nano (None without timestamps);
    at most SUMMARY_MAX_RESOURCES resources of SUMMARY_MAX_ATTRIBUTES attributes),
    top_functions ([[leaf function name, weight], ...] by descending weight, then name; at
    most SUMMARY_TOP_FUNCTIONS) and top_functions_by_resource (the same, at most
    SUMMARY_TOP_FUNCTIONS_PER_RESOURCE each, keyed by the resource's process.pid as a
    string, for resources that carry one; resources with the same pid add up).
    Strings are cut to SUMMARY_MAX_STRING characters.
    A sample's function is its leaf: stack.location_indices[0] -> location.lines[0] ->
    function name, "[unknown]" when any step is missing or out of range.
    """
    d = request.dictionary
    strings = list(d.string_table)
    stacks, locations, functions = d.stack_table, d.location_table, d.function_table
    leaf_cache: dict[int, str] = {}

    def leaf_name(stack_index: int) -> str:
        cached = leaf_cache.get(stack_index)
        if cached is not None:
            return cached
        name = "[unknown]"
        if 0 <= stack_index < len(stacks) and stacks[stack_index].location_indices:
            location_index = stacks[stack_index].location_indices[0]
            if 0 <= location_index < len(locations) and locations[location_index].lines:
                function_index = locations[location_index].lines[0].function_index
                if 0 <= function_index < len(functions):
                    name_index = functions[function_index].name_strindex
                    if 0 <= name_index < len(strings):
                        name = strings[name_index][:SUMMARY_MAX_STRING] or "[unknown]"
        leaf_cache[stack_index] = name
        return name

    def type_name(value_type: profiles_pb2.ValueType) -> str:
        parts = []
        for index in (value_type.type_strindex, value_type.unit_strindex):
            parts.append(strings[index][:SUMMARY_MAX_STRING] if 0 <= index < len(strings) else "?")
        return "/".join(parts)

    total_profiles = total_samples = total_weight = 0
    by_type: dict[str, int] = {}
    top: dict[str, int] = {}
    top_by_pid: dict[str, dict[str, int]] = {}
    resources: list[dict[str, Any]] = []
    for resource_profiles in request.resource_profiles:
        attributes: dict[str, Any] = {}
        for pair in resource_profiles.resource.attributes[:SUMMARY_MAX_ATTRIBUTES]:
            attributes.setdefault(_key_of(pair, strings)[:SUMMARY_MAX_STRING], any_value_to_python(pair.value, strings))
        pid = attributes.get("process.pid")
        pid_top = None
        if pid is not None and (str(pid) in top_by_pid or len(top_by_pid) < SUMMARY_MAX_RESOURCES):
            pid_top = top_by_pid.setdefault(str(pid), {})
        profiles = samples = weight = 0
        first_time: Optional[int] = None
        last_time: Optional[int] = None
        for scope_profiles in resource_profiles.scope_profiles:
            for profile in scope_profiles.profiles:
                profiles += 1
                kind = type_name(profile.sample_type)
                for sample in profile.samples:
                    sample_weight = _sample_weight(sample)
                    if sample.timestamps_unix_nano:
                        low, high = min(sample.timestamps_unix_nano), max(sample.timestamps_unix_nano)
                        first_time = low if first_time is None else min(first_time, low)
                        last_time = high if last_time is None else max(last_time, high)
                    samples += 1
                    weight += sample_weight
                    by_type[kind] = by_type.get(kind, 0) + sample_weight
                    name = leaf_name(sample.stack_index)
                    top[name] = top.get(name, 0) + sample_weight
                    if pid_top is not None:
                        pid_top[name] = pid_top.get(name, 0) + sample_weight
        total_profiles += profiles
        total_samples += samples
        total_weight += weight
        if len(resources) < SUMMARY_MAX_RESOURCES:
            resources.append({
                "attributes": attributes, "profiles": profiles, "samples": samples, "weight": weight,
                "first_timestamp_unix_nano": first_time, "last_timestamp_unix_nano": last_time,
            })

    return {
        "resource_profiles": len(request.resource_profiles),
        "profiles": total_profiles,
        "samples": total_samples,
        "total_weight": total_weight,
        "weight_by_sample_type": by_type,
        "resources": resources,
        "top_functions": _top(top, SUMMARY_TOP_FUNCTIONS),
        "top_functions_by_resource": {
            pid: _top(weights, SUMMARY_TOP_FUNCTIONS_PER_RESOURCE) for pid, weights in top_by_pid.items()
        },
    }
