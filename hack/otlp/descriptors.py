"""Writes the official OTLP profiles descriptors as a FileDescriptorSet.

The PyPI package opentelemetry-proto ships no .proto files, only generated modules that
embed each file's serialized FileDescriptorProto. hack/gen-proto feeds the set this script
writes to `protoc --descriptor_set_in`, so the Swift code is generated from exactly the
schema the Python receiver decodes with.

Usage: descriptors.py OUTPUT.pb
"""

import sys

from google.protobuf import descriptor_pb2
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: descriptors.py OUTPUT.pb")
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    seen = set()

    def add(file_descriptor) -> None:
        # Dependencies first, each file once: the order protoc expects.
        if file_descriptor.name in seen:
            return
        for dependency in file_descriptor.dependencies:
            add(dependency)
        seen.add(file_descriptor.name)
        descriptor_set.file.add().ParseFromString(file_descriptor.serialized_pb)

    add(profiles_service_pb2.DESCRIPTOR)
    with open(sys.argv[1], "wb") as output:
        output.write(descriptor_set.SerializeToString(deterministic=True))
    for file in descriptor_set.file:
        print(file.name)


if __name__ == "__main__":
    main()
