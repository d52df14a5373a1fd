"""Just enough protobuf and gRPC to call four containerd services the way dockerd 29 does.

``ctr`` 1.6 cannot put a snapshot under a lease, add a resource to a lease, or create a container
record without making a snapshot of its own; dockerd 29 does all three (moby
``daemon/containerd/image_snapshot.go``: a lease named after the container holds ``<id>-init``
and ``<id>``; ``daemon/oci_linux.go`` and ``libcontainerd/remote/client.go``: a container whose
snapshot key is its id, with the ``com.docker/engine.bundle.path`` label and no image). The
generator makes those calls here, over containerd's own socket, with requests encoded by hand
after containerd 1.6's ``api/services/{leases,snapshots,containers}/v1/*.proto`` (field numbers
below). ``grpcio`` carries the bytes (``pip install grpcio``); no generated code is needed.
"""

from __future__ import annotations

from typing import Any

NS_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, value: bytes | str) -> bytes:
    """A length-delimited field (string, bytes or an embedded message)."""
    raw = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(raw)) + raw


def string_map(number: int, items: dict[str, str]) -> bytes:
    return b"".join(field(number, field(1, k) + field(2, v)) for k, v in sorted(items.items()))


def decode(data: bytes) -> list[tuple[int, int | bytes]]:
    """The fields of a message: (number, value) with varints as ints, the rest as bytes."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
            out.append((number, value))
        elif wire == 2:
            size, i = _read_varint(data, i)
            out.append((number, data[i : i + size]))
            i += size
        elif wire == 1:
            out.append((number, data[i : i + 8]))
            i += 8
        elif wire == 5:
            out.append((number, data[i : i + 4]))
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


class Containerd:
    """Unary calls on containerd's gRPC socket, with the namespace (and a lease) as headers."""

    def __init__(self, socket: str) -> None:
        import grpc

        self.channel = grpc.insecure_channel(f"unix://{socket}")

    def close(self) -> None:
        self.channel.close()

    def call(self, method: str, body: bytes, ns: str, lease: str | None = None) -> bytes:
        metadata = [(NS_HEADER, ns)] + ([(LEASE_HEADER, lease)] if lease else [])
        stub: Any = self.channel.unary_unary(method)
        reply: bytes = stub(body, metadata=metadata, timeout=60)
        return reply

    # leases.v1: CreateRequest{id=1, labels=3}; AddResourceRequest{id=1, resource=2{id=1,type=2}}
    def lease_create(self, ns: str, lease_id: str, labels: dict[str, str] | None = None) -> None:
        body = field(1, lease_id) + string_map(3, labels or {})
        self.call("/containerd.services.leases.v1.Leases/Create", body, ns)

    def lease_add(self, ns: str, lease_id: str, resource_id: str, kind: str) -> None:
        body = field(1, lease_id) + field(2, field(1, resource_id) + field(2, kind))
        self.call("/containerd.services.leases.v1.Leases/AddResource", body, ns)

    def lease_resources(self, ns: str, lease_id: str) -> list[dict[str, str]]:
        reply = self.call(
            "/containerd.services.leases.v1.Leases/ListResources", field(1, lease_id), ns
        )
        out = []
        for number, value in decode(reply):
            if number == 1 and isinstance(value, bytes):
                parts = {n: v for n, v in decode(value) if isinstance(v, bytes)}
                out.append({"id": parts.get(1, b"").decode(), "type": parts.get(2, b"").decode()})
        return out

    # snapshots.v1: Prepare{snapshotter=1, key=2, parent=3, labels=4} → {mounts=1{type=1,
    # source=2, target=3, options=4}}; Commit{snapshotter=1, name=2, key=3, labels=4}
    def prepare(self, ns: str, snapshotter: str, key: str, parent: str, lease: str) -> list[str]:
        body = field(1, snapshotter) + field(2, key) + field(3, parent)
        reply = self.call("/containerd.services.snapshots.v1.Snapshots/Prepare", body, ns, lease)
        options: list[str] = []
        for number, mount in decode(reply):
            if number == 1 and isinstance(mount, bytes):
                options += [v.decode() for n, v in decode(mount) if n == 4 and isinstance(v, bytes)]
        return options

    def commit(self, ns: str, snapshotter: str, name: str, key: str, lease: str) -> None:
        body = field(1, snapshotter) + field(2, name) + field(3, key)
        self.call("/containerd.services.snapshots.v1.Snapshots/Commit", body, ns, lease)

    # containers.v1: CreateContainerRequest{container=1{id=1, labels=2, image=3, runtime=4{name=1},
    # spec=5 (Any{type_url=1, value=2}), snapshotter=6, snapshot_key=7}}
    def container_create(
        self,
        ns: str,
        cid: str,
        *,
        labels: dict[str, str],
        runtime: str,
        spec: bytes,
        image: str = "",
        snapshotter: str = "",
        snapshot_key: str = "",
    ) -> None:
        body = field(1, cid) + string_map(2, labels)
        if image:
            body += field(3, image)
        body += field(4, field(1, runtime))
        body += field(5, field(1, SPEC_TYPE_URL) + field(2, spec))
        if snapshotter:
            body += field(6, snapshotter)
        if snapshot_key:
            body += field(7, snapshot_key)
        self.call("/containerd.services.containers.v1.Containers/Create", field(1, body), ns)
