#!/usr/bin/env python3
"""Build the legacy sample: a Docker 1.8.2 devicemapper root modelled on a well-known article.

The article is "docker 镜像与容器存储目录结构精讲" (CentOS 7, kernel 3.10.0-229.el7.x86_64,
Docker 1.8.2, devicemapper on loopback files): it lists /var/lib/docker after the first start,
after ``docker pull nginx`` and after a container was started. This script writes such a root:
``nginx:latest`` as ten v1 images, graph ids from ``22f3bf58cd09…`` (base) to ``c2c9e418b22c…``
(top), base thin device 1 and the layers on devices 2…11, a container ``814ec8083966…`` named
``nginx`` running ``nginx -g 'daemon off;'`` on devices 12 (``<cid>-init``) and 13 (``<cid>``),
``repositories-devicemapper``, ``linkgraph.db``, and the two loopback files of the thin pool.
The pool metadata is written by Debian's ``thin_restore`` from an XML generated here, then
judged by ``thin_check`` and read back with ``thin_dump``.

Every value the article does not show is chosen here, deterministically (ids are sha256 of fixed
seed strings, times are fixed); ``CHOSEN`` lists them and the truth file repeats the list.

Usage: python3 samples/make-legacy-devicemapper-sample.py [OUTDIR]     (default: samples/)

Needs Python 3.11 (stdlib only), GNU tar and gzip, and thin-provisioning-tools
(``apt-get install -y thin-provisioning-tools``: thin_restore, thin_check, thin_dump 0.9.0).
Writes OUTDIR/legacy-1.8-devicemapper.tar.gz and OUTDIR/legacy-1.8-devicemapper.truth.json.
"""

from __future__ import annotations

import base64
import calendar
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME = "legacy-1.8-devicemapper"
SEED = "docker-forensics/" + NAME
DOCKER_VERSION = "1.8.2"
DEVICE_SIZE = 107374182400  # dm.basesize default of Docker 1.8/1.9 (100 GiB)
DATA_FILE_SIZE = 107374182400  # loopback data file, 100 GiB sparse
METADATA_FILE_SIZE = 2147483648  # loopback metadata file, 2 GiB sparse
DATA_BLOCK_SIZE = 128  # sectors (64 KiB), dm.blocksize default
BLOCK_BYTES = DATA_BLOCK_SIZE * 512
NR_DATA_BLOCKS = DATA_FILE_SIZE // BLOCK_BYTES
POOL_VERSION = 2  # what thin-provisioning-tools write by default
EMPTY_BLOB = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NGINX_VERSION = "1.9.5-1~jessie"
MAINTAINER = 'NGINX Docker Maintainers "docker-maint@nginx.com"'
ROOT = "/var/lib/docker"

# What the issue quotes from the article's listings (only prefixes of the three ids).
ARTICLE = {
    "title": "docker 镜像与容器存储目录结构精讲",
    "copies": [
        "https://e-com-net.com/article/1277043055861448704.htm",
        "https://developer.aliyun.com/article/14766",
        "https://cloudmessage.top/archives/4docker镜像与容器存储目录md",
    ],
    "environment": "CentOS 7, kernel 3.10.0-229.el7.x86_64, Docker 1.8.2, devicemapper (loop-lvm)",
    "host_prompt": "[root@docker-100 docker]#",
    "tree_after_start": [
        "containers/",
        "devicemapper/devicemapper/data",
        "devicemapper/devicemapper/metadata",
        "devicemapper/metadata/base",
        "devicemapper/metadata/deviceset-metadata",
        "devicemapper/metadata/transaction-metadata",
        "graph/",
        "linkgraph.db",
        "repositories-devicemapper",
        "tmp/",
        "trust/",
        "volumes/",
    ],
    "image": "nginx:latest, ten layers",
    "base_layer_id_prefix": "22f3bf58cd09",
    "top_layer_id_prefix": "c2c9e418b22c",
    "container_id_prefix": "814ec8083966",
    "container": "named nginx, running nginx -g 'daemon off;'",
    "device_ids": "base 1, layers 2…11 in parent order",
    "device_size": DEVICE_SIZE,
}


def hexid(seed: str) -> str:
    return hashlib.sha256(f"{SEED}/{seed}".encode()).hexdigest()


def with_prefix(prefix: str, seed: str) -> str:
    return prefix + hexid(seed)[: 64 - len(prefix)]


def uuid_from(seed: str) -> str:
    h = bytearray(bytes.fromhex(hexid(seed))[:16])
    h[6] = (h[6] & 0x0F) | 0x40  # version 4, as mke2fs makes
    h[8] = (h[8] & 0x3F) | 0x80
    s = h.hex()
    return f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}"


def epoch(ts: str) -> int:
    """Seconds of an RFC 3339 UTC time such as 2015-10-13T02:16:41.078420312Z."""
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?Z", ts)
    assert m, ts
    return calendar.timegm(tuple(int(x) for x in m.groups()) + (0, 0, 0))


def gojson(obj: Any) -> str:
    """encoding/json.Marshal: compact, keys in the given order, HTML-safe escapes."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# --- the host's timeline (UTC; the host clock is CST, UTC+8) -------------------------------
T_START = "2015-10-13T02:10:23Z"  # first `systemctl start docker`: pool, base device
T_RUN_CREATE = "2015-10-13T02:16:40.418337615Z"
T_RUN_START = "2015-10-13T02:16:41.078420312Z"
T_LOG = "2015-10-13T02:18:02.664013847Z"  # one `curl` from the host
T_POOL_LAST_WRITE = "2015-10-13T02:16:46Z"
CONTAINER_PID = 2936

CID = with_prefix(ARTICLE["container_id_prefix"], "container")
BASE_UUID = uuid_from("base-fs-uuid")
NETWORK_ID = hexid("bridge-network-id")
ENDPOINT_ID = hexid("container-endpoint-id")
CONTAINER_IP = "172.17.0.1"
GATEWAY = "172.17.42.1"
MAC = "02:42:ac:11:00:01"
RESOLV_CONF = "# Generated by NetworkManager\nnameserver 114.114.114.114\n"


# --- runconfig.Config of Docker 1.8 (no omitempty anywhere) ---------------------------------
def run_config(
    hostname: str,
    *,
    env: list[str] | None,
    cmd: list[str] | None,
    image: str,
    exposed: dict[str, dict[str, Any]] | None = None,
    on_build: list[str] | None = None,
    attach: bool = False,
) -> dict[str, Any]:
    return {
        "Hostname": hostname,
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "AttachStdout": attach,
        "AttachStderr": attach,
        "ExposedPorts": exposed,
        "PublishService": "",
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": env,
        "Cmd": cmd,
        "Image": image,
        "Volumes": None,
        "VolumeDriver": "",
        "WorkingDir": "",
        "Entrypoint": None,
        "NetworkDisabled": False,
        "MacAddress": "",
        "OnBuild": on_build,
        "Labels": {},
    }


# --- the layers ---------------------------------------------------------------------------
@dataclass
class Member:
    name: str
    kind: str = "file"  # file, dir, symlink
    data: bytes = b""
    mode: int = 0o644
    target: str = ""


@dataclass
class Layer:
    key: str
    created: str
    created_by: list[str]
    members: list[Member]
    build: str  # "debian" or "nginx": which build the layer came from
    id: str = ""
    parent: str = ""
    device_id: int = 0
    tar: bytes = b""
    entries: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    checksum: str = ""
    json_text: str = ""


OS_RELEASE = (
    b'PRETTY_NAME="Debian GNU/Linux 8 (jessie)"\nNAME="Debian GNU/Linux"\nVERSION_ID="8"\n'
    b'VERSION="8 (jessie)"\nID=debian\nHOME_URL="http://www.debian.org/"\n'
    b'SUPPORT_URL="http://www.debian.org/support/"\nBUG_REPORT_URL="https://bugs.debian.org/"\n'
)
SOURCES_LIST = (
    b"deb http://httpredir.debian.org/debian jessie main\n"
    b"deb http://httpredir.debian.org/debian jessie-updates main\n"
    b"deb http://security.debian.org jessie/updates main\n"
)
NGINX_LINE = b"deb http://nginx.org/packages/mainline/debian/ jessie nginx\n"
NGINX_CONF = (
    b"user  nginx;\nworker_processes  1;\n\nerror_log  /var/log/nginx/error.log warn;\n"
    b"pid        /var/run/nginx.pid;\n\nevents {\n    worker_connections  1024;\n}\n\n"
    b"http {\n    include       /etc/nginx/mime.types;\n"
    b"    default_type  application/octet-stream;\n"
    b"    access_log  /var/log/nginx/access.log  main;\n    sendfile        on;\n"
    b"    keepalive_timeout  65;\n    include /etc/nginx/conf.d/*.conf;\n}\n"
)
DEFAULT_CONF = (
    b"server {\n    listen       80;\n    server_name  localhost;\n\n    location / {\n"
    b"        root   /usr/share/nginx/html;\n        index  index.html index.htm;\n    }\n}\n"
)
INDEX_HTML = (
    b"<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n"
    b"<h1>Welcome to nginx!</h1>\n<p>Synthetic stand-in for the packaged page.</p>\n"
    b"</body>\n</html>\n"
)


def synthetic_bytes(label: str, size: int) -> bytes:
    """Deterministic filler standing in for a binary the sample does not carry."""
    out = bytearray()
    n = 0
    while len(out) < size:
        out += hashlib.sha256(f"{SEED}/blob/{label}/{n}".encode()).digest()
        n += 1
    return bytes(out[:size])


def d(name: str, mode: int = 0o755) -> Member:
    return Member(name, "dir", mode=mode)


def f(name: str, data: bytes, mode: int = 0o644) -> Member:
    return Member(name, "file", data=data, mode=mode)


def ln(name: str, target: str) -> Member:
    return Member(name, "symlink", mode=0o777, target=target)


ADD_FILE = hexid("debian-add-file")
LAYERS: list[Layer] = [
    Layer(
        "debian-add",
        "2015-09-21T20:15:47.433616227Z",
        ["/bin/sh", "-c", f"#(nop) ADD file:{ADD_FILE} in /"],
        [
            d("bin"),
            f("bin/dash", synthetic_bytes("dash", 1800), 0o755),
            ln("bin/sh", "dash"),
            d("etc"),
            f("etc/debian_version", b"8.2\n"),
            f("etc/hostname", b"localhost\n"),
            f("etc/os-release", OS_RELEASE),
            d("etc/apt"),
            f("etc/apt/sources.list", SOURCES_LIST),
            d("root", 0o700),
            d("tmp", 0o1777),
            d("usr"),
            d("usr/sbin"),
            d("var"),
            d("var/log"),
        ],
        "debian",
    ),
    Layer(
        "debian-cmd",
        "2015-09-21T20:15:48.105437093Z",
        ["/bin/sh", "-c", '#(nop) CMD ["/bin/bash"]'],
        [],
        "debian",
    ),
    Layer(
        "maintainer",
        "2015-09-22T23:44:08.221045721Z",
        ["/bin/sh", "-c", f"#(nop) MAINTAINER {MAINTAINER}"],
        [],
        "nginx",
    ),
    Layer(
        "apt-key",
        "2015-09-22T23:44:12.730587201Z",
        [
            "/bin/sh",
            "-c",
            "apt-key adv --keyserver hkp://pgp.mit.edu:80 "
            "--recv-keys 573BFD6B3D8FBC641079A6ABABF5BD827BD9BF62",
        ],
        [d("etc"), d("etc/apt"), f("etc/apt/trusted.gpg", synthetic_bytes("trusted.gpg", 1205))],
        "nginx",
    ),
    Layer(
        "sources",
        "2015-09-22T23:44:14.317845063Z",
        [
            "/bin/sh",
            "-c",
            'echo "deb http://nginx.org/packages/mainline/debian/ jessie nginx"'
            " >> /etc/apt/sources.list",
        ],
        [d("etc"), d("etc/apt"), f("etc/apt/sources.list", SOURCES_LIST + NGINX_LINE)],
        "nginx",
    ),
    Layer(
        "env",
        "2015-09-22T23:44:15.002137385Z",
        ["/bin/sh", "-c", f"#(nop) ENV NGINX_VERSION={NGINX_VERSION}"],
        [],
        "nginx",
    ),
    Layer(
        "apt-get",
        "2015-09-22T23:44:41.556230477Z",
        [
            "/bin/sh",
            "-c",
            "apt-get update &&     apt-get install -y ca-certificates "
            "nginx=${NGINX_VERSION} &&     rm -rf /var/lib/apt/lists/*",
        ],
        [
            d("etc"),
            d("etc/nginx"),
            d("etc/nginx/conf.d"),
            f("etc/nginx/conf.d/default.conf", DEFAULT_CONF),
            f("etc/nginx/nginx.conf", NGINX_CONF),
            d("usr"),
            d("usr/sbin"),
            f("usr/sbin/nginx", synthetic_bytes("nginx", 3000), 0o755),
            d("usr/share"),
            d("usr/share/nginx"),
            d("usr/share/nginx/html"),
            f("usr/share/nginx/html/index.html", INDEX_HTML),
            d("var"),
            d("var/cache"),
            d("var/cache/nginx"),
            d("var/log"),
            d("var/log/nginx"),
        ],
        "nginx",
    ),
    Layer(
        "log-links",
        "2015-09-22T23:44:43.012986644Z",
        [
            "/bin/sh",
            "-c",
            "ln -sf /dev/stdout /var/log/nginx/access.log "
            "&& ln -sf /dev/stderr /var/log/nginx/error.log",
        ],
        [
            d("var"),
            d("var/log"),
            d("var/log/nginx"),
            ln("var/log/nginx/access.log", "/dev/stdout"),
            ln("var/log/nginx/error.log", "/dev/stderr"),
        ],
        "nginx",
    ),
    Layer(
        "expose",
        "2015-09-22T23:44:43.700312970Z",
        ["/bin/sh", "-c", "#(nop) EXPOSE 443/tcp 80/tcp"],
        [],
        "nginx",
    ),
    Layer(
        "cmd",
        "2015-09-22T23:44:44.387520142Z",
        ["/bin/sh", "-c", '#(nop) CMD ["nginx" "-g" "daemon off;"]'],
        [],
        "nginx",
    ),
]
# When each layer was registered on the host by `docker pull nginx` (v2 pull, bottom up).
PULL_TIMES = [
    "2015-10-13T02:14:21Z",
    "2015-10-13T02:14:22Z",
    "2015-10-13T02:14:22Z",
    "2015-10-13T02:14:23Z",
    "2015-10-13T02:14:23Z",
    "2015-10-13T02:14:24Z",
    "2015-10-13T02:14:31Z",
    "2015-10-13T02:14:32Z",
    "2015-10-13T02:14:32Z",
    "2015-10-13T02:14:33Z",
]


def assign_ids() -> None:
    for i, layer in enumerate(LAYERS):
        if i == 0:
            layer.id = with_prefix(ARTICLE["base_layer_id_prefix"], "layer/0")
        elif i == len(LAYERS) - 1:
            layer.id = with_prefix(ARTICLE["top_layer_id_prefix"], f"layer/{i}")
        else:
            layer.id = hexid(f"layer/{i}")
        layer.parent = LAYERS[i - 1].id if i else ""
        layer.device_id = i + 2


# --- layer tars and tar-split (vbatts/tar-split v0.9.4, as vendored by Docker 1.8.0–1.8.2) ---
def make_tar(layer: Layer) -> bytes:
    if not layer.members:
        return bytes(1024)  # what Docker's Go tar writer makes of an empty layer
    mtime = epoch(layer.created)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for m in layer.members:
            ti = tarfile.TarInfo(m.name)
            ti.mtime = mtime
            ti.mode = m.mode
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            if m.kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif m.kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = m.target
                tf.addfile(ti)
            else:
                ti.size = len(m.data)
                tf.addfile(ti, io.BytesIO(m.data))
    return buf.getvalue()


def _crc64_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xD800000000000000 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC64_TABLE = _crc64_table()


def crc64_iso(data: bytes) -> bytes:
    """Go hash/crc64 with the ISO table, Sum(nil): 8 bytes big-endian."""
    crc = 0xFFFFFFFFFFFFFFFF
    for b in data:
        crc = CRC64_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return (crc ^ 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


assert crc64_iso(b"123456789").hex() == "b90956c775a41001"


def _octal(field_bytes: bytes) -> int:
    text = field_bytes.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def tar_split(tar: bytes) -> list[dict[str, Any]]:
    """The entries tar-split v0.9.4's NewInputTarStream packs for ``tar``.

    Segment entries carry the raw header blocks (with the previous member's padding in front);
    file entries carry the name, the size and the crc64 of the data (null for size 0). v0.9.4's
    struct tags were broken (`json:"name",omitempty`), so every entry has "name" and "size";
    the remainder after the end-of-archive blocks is always written, even when empty.
    """
    entries: list[dict[str, Any]] = []
    raw = bytearray()
    pos = 0
    long_name: str | None = None
    pax_path: str | None = None
    while True:
        block = tar[pos : pos + 512]
        raw += block
        pos += 512
        if block == bytes(512):
            raw += tar[pos : pos + 512]
            pos += 512
            entries.append({"type": 2, "payload": bytes(raw)})
            break
        size = _octal(block[124:136])
        typeflag = block[156:157]
        if typeflag in (b"x", b"g", b"L", b"K"):
            padded = size + (-size) % 512
            data = tar[pos : pos + size]
            raw += tar[pos : pos + padded]
            pos += padded
            if typeflag == b"L":
                long_name = data.rstrip(b"\0").decode()
            elif typeflag == b"x":
                for rec in data.decode().split("\n"):
                    if " path=" in rec:
                        pax_path = rec.split(" path=", 1)[1]
            continue
        name = block[0:100].split(b"\0", 1)[0].decode()
        prefix = block[345:500].split(b"\0", 1)[0].decode()
        if block[257:263] == b"ustar\0" and prefix:
            name = prefix + "/" + name
        name = pax_path or long_name or name
        pax_path = long_name = None
        entries.append({"type": 2, "payload": bytes(raw)})
        raw = bytearray()
        data = tar[pos : pos + size]
        pos += size
        entries.append(
            {
                "type": 1,
                "name": name,
                "size": size,
                "payload": crc64_iso(data) if size > 0 else None,
            }
        )
        pad = (-size) % 512
        raw += tar[pos : pos + pad]
        pos += pad
    entries.append({"type": 2, "payload": tar[pos:]})  # the remainder, e.g. record padding
    return entries


def tar_split_stream(entries: list[dict[str, Any]]) -> bytes:
    lines = []
    for i, e in enumerate(entries):
        p = e["payload"]
        obj = {
            "type": e["type"],
            "name": e.get("name", ""),
            "size": e.get("size", 0),
            "payload": None if p is None else base64.b64encode(p).decode(),
            "position": i,
        }
        lines.append(gojson(obj) + "\n")
    return "".join(lines).encode()


def reassemble(entries: list[dict[str, Any]], members: list[Member]) -> bytes:
    files = {m.name.rstrip("/"): m.data for m in members if m.kind == "file"}
    out = bytearray()
    for e in entries:
        if e["type"] == 2:
            out += e["payload"]
        elif e["size"]:
            data = files[e["name"].rstrip("/")]
            assert crc64_iso(data) == e["payload"], e["name"]
            out += data
    return bytes(out)


def gzip_n(data: bytes) -> bytes:
    return subprocess.run(["gzip", "-9n"], input=data, capture_output=True, check=True).stdout


def go_gzip(data: bytes) -> bytes:
    """gzip.NewWriter's header: no name, mtime 0, XFL 0, OS 255 (the deflate stream differs)."""
    out = bytearray(gzip.compress(data, compresslevel=6, mtime=0))
    out[8:10] = b"\x00\xff"  # XFL 0, OS 255 ("unknown"), as Go writes; zlib writes OS 3
    return bytes(out)


def build_layers() -> None:
    assign_ids()
    debian_host = hexid("debian-build-hostname")[:12]
    nginx_host = hexid("nginx-build-hostname")[:12]
    env: list[str] | None = None
    cmd: list[str] | None = None
    exposed: dict[str, dict[str, Any]] | None = None
    author = ""
    for i, layer in enumerate(LAYERS):
        layer.tar = make_tar(layer)
        layer.entries = tar_split(layer.tar)
        assert reassemble(layer.entries, layer.members) == layer.tar, layer.key
        # devicemapper is a naive-diff driver: ApplyDiff returns the sum of the header sizes
        layer.size = sum(len(m.data) for m in layer.members if m.kind == "file")
        layer.checksum = (
            EMPTY_BLOB
            if not layer.members
            else ("sha256:" + hashlib.sha256(gzip_n(layer.tar)).hexdigest())
        )
        by = layer.created_by[2]
        if layer.build == "nginx" and env is None:
            env = [PATH_ENV]
        if by.startswith("#(nop) CMD"):
            cmd = (
                json.loads(by.removeprefix("#(nop) CMD "))
                if "/bin/bash" in by
                else ["nginx", "-g", "daemon off;"]
            )
        if by.startswith("#(nop) ENV") and env is not None:
            env = [*env, f"NGINX_VERSION={NGINX_VERSION}"]
        if by.startswith("#(nop) EXPOSE"):
            exposed = {"443/tcp": {}, "80/tcp": {}}
        if by.startswith("#(nop) MAINTAINER"):
            author = MAINTAINER
        host = debian_host if layer.build == "debian" else nginx_host
        on_build: list[str] | None = [] if layer.build == "nginx" else None
        parent_image = layer.parent
        image: dict[str, Any] = {"id": layer.id}
        if layer.parent:
            image["parent"] = layer.parent
        image["created"] = layer.created
        image["container"] = hexid(f"build-container/{i}")
        image["container_config"] = run_config(
            host,
            env=env,
            cmd=layer.created_by,
            image=parent_image,
            exposed=exposed,
            on_build=on_build,
        )
        image["docker_version"] = DOCKER_VERSION
        if author:
            image["author"] = author
        image["config"] = run_config(
            host, env=env, cmd=cmd, image=parent_image, exposed=exposed, on_build=on_build
        )
        image["architecture"] = "amd64"
        image["os"] = "linux"
        image["Size"] = layer.size
        layer.json_text = gojson(image) + "\n"  # graph.storeImage: json.NewEncoder(f).Encode


# --- devicemapper: device JSON and the pool ------------------------------------------------
@dataclass
class Device:
    hash: str  # "" for the base device
    device_id: int
    origin: int  # 0 for a thin device made with create_thin
    created: str
    transaction_id: int = 0  # metadata/<hash>: pool trans_id after the creating transaction
    initialized: bool = False
    mappings: dict[int, tuple[int, int]] = field(default_factory=dict)  # vblock -> data, time
    creation_time: int = 0
    snap_time: int = 0

    @property
    def file_name(self) -> str:
        return self.hash or "base"


# A scaled-down ext4 footprint on the base device (64 KiB virtual blocks): superblock and group
# descriptors, bitmaps, the first inode-table blocks, 16 journal blocks, and the sparse_super
# backups in block groups 1, 3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343, 625, 729 (128 MiB each).
BASE_EXTENTS = [(0, 4), (16, 2), (32, 8), (1024, 16)] + [
    (g * 2048, 1) for g in (1, 3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343, 625, 729)
]


def build_devices() -> list[Device]:
    devices = [Device("", 1, 0, T_START, initialized=True)]
    for layer, when in zip(LAYERS, PULL_TIMES, strict=True):
        devices.append(Device(layer.id, layer.device_id, layer.device_id - 1, when))
    devices.append(Device(CID + "-init", 12, 11, T_RUN_CREATE))
    devices.append(Device(CID, 13, 12, T_RUN_CREATE))
    # Docker's protocol: each create is one transaction T -> T+1 (details keep T, JSON T+1)
    for n, dev in enumerate(devices):
        dev.transaction_id = n + 1
    # the pool: data blocks handed out in write order; `time` grows with every snapshot
    next_data = 0
    pool_time = 0
    by_id = {dev.device_id: dev for dev in devices}
    for dev in devices:
        if dev.origin:
            origin = by_id[dev.origin]
            pool_time += 1
            origin.snap_time = pool_time
            dev.mappings = dict(origin.mappings)
        dev.creation_time = dev.snap_time = pool_time
        own: list[int] = []
        if not dev.origin:
            for start, length in BASE_EXTENTS:
                own.extend(range(start, start + length))
        else:
            own = [0, 1024]  # mount rewrites the ext4 superblock and the journal head
            members = next((la.members for la in LAYERS if la.id == dev.hash), None)
            if dev.hash == CID + "-init":
                own += [32, 40]  # .dockerinit, .dockerenv, /etc/hosts & co.
            elif dev.hash == CID:
                own += [16, 32, 41, 42]  # nginx.pid, /var/cache/nginx/*
            elif members:
                payload = sum(len(m.data) for m in members if m.kind == "file")
                new = max(1, -(-payload // BLOCK_BYTES))
                base_v = 4096 + 256 * dev.device_id
                own += [16, 32] + list(range(base_v, base_v + new))
        for vblock in sorted(set(own)):
            dev.mappings[vblock] = (next_data, pool_time)
            next_data += 1
    return devices


def pool_xml(devices: list[Device], transaction: int, time: int) -> str:
    out = [
        f'<superblock uuid="" time="{time}" transaction="{transaction}" flags="0" '
        f'version="{POOL_VERSION}" data_block_size="{DATA_BLOCK_SIZE}" '
        f'nr_data_blocks="{NR_DATA_BLOCKS}">'
    ]
    for dev in sorted(devices, key=lambda x: x.device_id):
        out.append(
            f'  <device dev_id="{dev.device_id}" mapped_blocks="{len(dev.mappings)}" '
            f'transaction="{dev.transaction_id - 1}" creation_time="{dev.creation_time}" '
            f'snap_time="{dev.snap_time}">'
        )
        runs: list[list[int]] = []  # [origin_begin, data_begin, length, time]
        for vb in sorted(dev.mappings):
            db, t = dev.mappings[vb]
            last = runs[-1] if runs else None
            if last and last[0] + last[2] == vb and last[1] + last[2] == db and last[3] == t:
                last[2] += 1
            else:
                runs.append([vb, db, 1, t])
        for ob, db, length, t in runs:
            if length == 1:
                out.append(
                    f'    <single_mapping origin_block="{ob}" data_block="{db}" time="{t}"/>'
                )
            else:
                out.append(
                    f'    <range_mapping origin_begin="{ob}" data_begin="{db}" '
                    f'length="{length}" time="{t}"/>'
                )
        out.append("  </device>")
    out.append("</superblock>")
    return "\n".join(out) + "\n"


def superblock_fields(metadata: Path) -> dict[str, int]:
    with metadata.open("rb") as fh:
        sb = fh.read(512)
    return {
        "version": int.from_bytes(sb[0x28:0x2C], "little"),
        "time": int.from_bytes(sb[0x2C:0x30], "little"),
        "transaction_id": int.from_bytes(sb[0x30:0x38], "little"),
        "data_block_size": int.from_bytes(sb[0x150:0x154], "little"),
        "metadata_nr_blocks": int.from_bytes(sb[0x158:0x160], "little"),
        "nr_data_blocks": int.from_bytes(sb[0x40:0x48], "little"),
        "data_blocks_allocated": int.from_bytes(sb[0x48:0x50], "little"),
    }


def tool(name: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK) else None
    )
    if not path:
        sys.exit(f"{name} not found: apt-get install -y thin-provisioning-tools")
    return path


def write_pool(dm: Path, devices: list[Device], xml: str, tmp: Path) -> dict[str, Any]:
    pool_dir = dm / "devicemapper"
    pool_dir.mkdir(mode=0o700)
    data = pool_dir / "data"
    metadata = pool_dir / "metadata"
    for path, size in ((data, DATA_FILE_SIZE), (metadata, METADATA_FILE_SIZE)):
        with path.open("wb") as fh:
            fh.truncate(size)
        path.chmod(0o600)
    xml_path = tmp / "pool.xml"
    xml_path.write_text(xml)
    subprocess.run(
        [tool("thin_restore"), "-i", str(xml_path), "-o", str(metadata)],
        check=True,
        capture_output=True,
    )
    check = subprocess.run([tool("thin_check"), str(metadata)], capture_output=True, text=True)
    if check.returncode != 0:
        sys.exit(f"thin_check failed ({check.returncode}):\n{check.stdout}{check.stderr}")
    dump = subprocess.run(
        [tool("thin_dump"), str(metadata)], capture_output=True, text=True, check=True
    ).stdout
    if dump != xml:
        sys.exit("thin_dump does not reproduce the generated XML")
    dumped_ids = [int(x) for x in re.findall(r'<device dev_id="(\d+)"', dump)]
    assert dumped_ids == sorted(dev.device_id for dev in devices), dumped_ids
    xml_path.unlink()
    return {
        "thin_check_rc": check.returncode,
        "thin_check_stderr": check.stderr.strip().splitlines(),
        "thin_dump_device_ids": dumped_ids,
        "superblock": superblock_fields(metadata),
    }


# --- containers/ and linkgraph.db ----------------------------------------------------------
def container_files() -> dict[str, tuple[bytes, int, str]]:
    top = LAYERS[-1]
    cdir = f"{ROOT}/containers/{CID}"
    short = CID[:12]
    cmd = ["nginx", "-g", "daemon off;"]
    config = run_config(
        short,
        env=[PATH_ENV, f"NGINX_VERSION={NGINX_VERSION}"],
        cmd=cmd,
        image="nginx",
        exposed={"443/tcp": {}, "80/tcp": {}},
    )
    state = {
        "Running": True,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": False,
        "Dead": False,
        "Pid": CONTAINER_PID,
        "ExitCode": 0,
        "Error": "",
        "StartedAt": T_RUN_START,
        "FinishedAt": "0001-01-01T00:00:00Z",
    }
    network = {  # daemon/network.Settings of 1.8: flat, fields in alphabetical order
        "Bridge": "",
        "EndpointID": ENDPOINT_ID,
        "Gateway": GATEWAY,
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "HairpinMode": False,
        "IPAddress": CONTAINER_IP,
        "IPPrefixLen": 16,
        "IPv6Gateway": "",
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "MacAddress": MAC,
        "NetworkID": NETWORK_ID,
        "PortMapping": None,
        "Ports": {"443/tcp": None, "80/tcp": None},
        "SandboxKey": f"/var/run/docker/netns/{short}",
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
    }
    container = {
        "State": state,
        "ID": CID,
        "Created": T_RUN_CREATE,
        "Path": cmd[0],
        "Args": cmd[1:],
        "Config": config,
        "Image": top.id,
        "NetworkSettings": network,
        "ResolvConfPath": f"{cdir}/resolv.conf",
        "HostnamePath": f"{cdir}/hostname",
        "HostsPath": f"{cdir}/hosts",
        "LogPath": f"{cdir}/{CID}-json.log",
        "Name": "/nginx",
        "Driver": "devicemapper",
        "ExecDriver": "native-0.2",
        "MountLabel": "",
        "ProcessLabel": "",
        "RestartCount": 0,
        "UpdateDns": False,
        "HasBeenStartedBefore": False,
        "MountPoints": {},
        "Volumes": None,
        "VolumesRW": None,
        "AppArmorProfile": "",
    }
    hostconfig = {
        "Binds": None,
        "ContainerIDFile": "",
        "LxcConf": [],
        "Memory": 0,
        "MemorySwap": 0,
        "CpuShares": 0,
        "CpuPeriod": 0,
        "CpusetCpus": "",
        "CpusetMems": "",
        "CpuQuota": 0,
        "BlkioWeight": 0,
        "OomKillDisable": False,
        "MemorySwappiness": -1,
        "Privileged": False,
        "PortBindings": {},
        "Links": None,
        "PublishAllPorts": False,
        "Dns": [],
        "DnsSearch": [],
        "ExtraHosts": None,
        "VolumesFrom": None,
        "Devices": [],
        "NetworkMode": "bridge",
        "IpcMode": "",
        "PidMode": "",
        "UTSMode": "",
        "CapAdd": None,
        "CapDrop": None,
        "GroupAdd": None,
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "SecurityOpt": None,
        "ReadonlyRootfs": False,
        "Ulimits": None,
        "LogConfig": {"Type": "json-file", "Config": {}},
        "CgroupParent": "",
        "ConsoleSize": [0, 0],
    }
    hosts = (
        f"{CONTAINER_IP}\t{short}\n127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
        "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    )
    access = (
        f'{GATEWAY} - - [13/Oct/2015:02:18:02 +0000] "GET / HTTP/1.1" 200 612 "-" '
        '"curl/7.29.0" "-"\n'
    )
    log = gojson({"log": access, "stream": "stdout", "time": T_LOG}) + "\n"
    rc_hash = "sha256:" + hashlib.sha256(RESOLV_CONF.encode()).hexdigest()
    return {
        "config.json": (gojson(container).encode(), 0o644, T_RUN_START),
        "hostconfig.json": (gojson(hostconfig).encode(), 0o644, T_RUN_START),
        "hostname": (f"{short}\n".encode(), 0o644, T_RUN_START),
        "hosts": (hosts.encode(), 0o644, T_RUN_START),
        "resolv.conf": (RESOLV_CONF.encode(), 0o644, T_RUN_START),
        "resolv.conf.hash": (rc_hash.encode(), 0o644, T_RUN_START),
        f"{CID}-json.log": (log.encode(), 0o600, T_LOG),
    }


LINKGRAPH_SCHEMA = [
    "CREATE TABLE entity (id text NOT NULL PRIMARY KEY)",
    'CREATE TABLE edge ("entity_id" text NOT NULL, "parent_id" text NULL, "name" text NOT NULL,\n'
    ' CONSTRAINT "parent_fk" FOREIGN KEY ("parent_id") REFERENCES "entity" ("id"),\n'
    ' CONSTRAINT "entity_fk" FOREIGN KEY ("entity_id") REFERENCES "entity" ("id"))',
    'CREATE UNIQUE INDEX "name_parent_ix" ON "edge" (parent_id, name)',
]


def write_linkgraph(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA page_size=1024")  # SQLite 3.8's default, as vendored in 2015
        conn.execute("PRAGMA journal_mode=DELETE")
        for sql in LINKGRAPH_SCHEMA:
            conn.execute(sql)
        conn.execute("INSERT INTO entity (id) VALUES (?)", ("0",))
        conn.execute("INSERT INTO edge (entity_id, name) VALUES (?, ?)", ("0", "/"))
        conn.execute("INSERT INTO entity (id) VALUES (?)", (CID,))
        conn.execute(
            "INSERT INTO edge (entity_id, name, parent_id) VALUES (?, ?, ?)", (CID, "nginx", "0")
        )
    finally:
        conn.close()
    path.chmod(0o644)


# --- the tree --------------------------------------------------------------------------------
def put(path: Path, data: bytes, mode: int, when: str, stamps: dict[Path, str]) -> None:
    path.write_bytes(data)
    path.chmod(mode)
    stamps[path] = when


def mkdir(path: Path, mode: int, when: str, stamps: dict[Path, str]) -> None:
    path.mkdir(mode=mode)
    path.chmod(mode)
    stamps[path] = when


def build_tree(top: Path, tmp: Path) -> dict[str, Any]:
    stamps: dict[Path, str] = {}
    root = top / "docker"
    mkdir(root, 0o700, T_START, stamps)
    for name in ("containers", "graph", "tmp", "trust", "volumes"):
        mkdir(root / name, 0o700, T_START, stamps)
    stamps[root / "containers"] = T_RUN_CREATE
    stamps[root / "graph"] = PULL_TIMES[-1]
    mkdir(root / "graph" / "_tmp", 0o700, PULL_TIMES[-1], stamps)

    for layer, when in zip(LAYERS, PULL_TIMES, strict=True):
        g = root / "graph" / layer.id
        mkdir(g, 0o700, when, stamps)
        put(g / "json", layer.json_text.encode(), 0o600, when, stamps)
        put(g / "layersize", str(layer.size).encode(), 0o600, when, stamps)
        put(g / "tar-data.json.gz", go_gzip(tar_split_stream(layer.entries)), 0o600, when, stamps)
        put(g / "checksum", layer.checksum.encode(), 0o600, when, stamps)

    top_id = LAYERS[-1].id
    repos = {"Repositories": {"nginx": {"latest": top_id}}}
    put(root / "repositories-devicemapper", gojson(repos).encode(), 0o600, PULL_TIMES[-1], stamps)

    cdir = root / "containers" / CID
    mkdir(cdir, 0o700, T_RUN_START, stamps)
    for name, (data, mode, when) in container_files().items():
        put(cdir / name, data, mode, when, stamps)

    write_linkgraph(root / "linkgraph.db")
    stamps[root / "linkgraph.db"] = T_RUN_CREATE

    dm = root / "devicemapper"
    mkdir(dm, 0o700, PULL_TIMES[0], stamps)  # mnt/ appeared with the first mount
    meta = dm / "metadata"
    mkdir(meta, 0o700, T_RUN_CREATE, stamps)
    mnt = dm / "mnt"
    mkdir(mnt, 0o755, T_RUN_CREATE, stamps)
    devices = build_devices()
    for dev in devices:
        record: dict[str, Any] = {
            "device_id": dev.device_id,
            "size": DEVICE_SIZE,
            "transaction_id": dev.transaction_id,
            "initialized": dev.initialized,
        }
        put(meta / dev.file_name, gojson(record).encode(), 0o600, dev.created, stamps)
        if dev.hash:  # driver.Get made the mount point; Put unmounts but leaves the directory
            mkdir(mnt / dev.hash, 0o755, dev.created, stamps)
    last = devices[-1]
    txn = {
        "open_transaction_id": last.transaction_id,
        "device_hash": last.hash,
        "device_id": last.device_id,
    }
    put(meta / "transaction-metadata", gojson(txn).encode(), 0o600, last.created, stamps)
    # saved when the base UUID was stored (first start) and on shutdown only: still 1 here
    dsm = {"next_device_id": 1, "BaseDeviceUUID": BASE_UUID}
    put(meta / "deviceset-metadata", gojson(dsm).encode(), 0o600, T_START, stamps)

    pool_time = max(dev.creation_time for dev in devices)
    xml = pool_xml(devices, last.transaction_id, pool_time)
    pool = write_pool(dm, devices, xml, tmp)
    stamps[dm / "devicemapper"] = T_START
    stamps[dm / "devicemapper" / "data"] = T_POOL_LAST_WRITE
    stamps[dm / "devicemapper" / "metadata"] = T_POOL_LAST_WRITE

    for path in sorted(stamps, key=lambda p: len(p.parts), reverse=True):
        t = epoch(stamps[path])
        os.utime(path, (t, t), follow_symlinks=False)
    return {"devices": devices, "pool": pool, "xml": xml, "deviceset": dsm, "transaction": txn}


def pack(top: Path, out: Path) -> None:
    part = out.with_name(out.name + ".part")
    tar = subprocess.Popen(
        [
            "tar",
            "--format=gnu",
            "--sparse",
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--sort=name",
            "-C",
            str(top),
            "-cf",
            "-",
            "docker",
        ],
        stdout=subprocess.PIPE,
    )
    assert tar.stdout is not None
    with part.open("wb") as fh:
        gz = subprocess.run(["gzip", "-9n"], stdin=tar.stdout, stdout=fh, check=False)
    tar.stdout.close()
    if tar.wait() != 0 or gz.returncode != 0:
        part.unlink(missing_ok=True)
        sys.exit("tar | gzip failed")
    part.replace(out)


CHOSEN = {
    "graph ids": "the base and top ids are the article's 12-hex prefixes completed with "
    "sha256('docker-forensics/legacy-1.8-devicemapper/layer/N'); the eight ids between them "
    "are that sha256 itself",
    "container id": "814ec8083966 completed with sha256('…/container')",
    "image history": "modelled on docker-library/nginx 1.9.5 on debian:jessie (Sept 2015), shaped "
    "to the article's ten layers: the two ln -sf are one RUN and there is no VOLUME "
    "(volumes/ stays empty, as in the article's tree)",
    "layer content": "small synthetic tars (Python tarfile, ustar, padded to 10240 bytes); empty "
    "layers are 1024 zero bytes as Docker's Go tar writer made them",
    "checksum": "sha256 of `gzip -9n` of the synthetic tar (the registry blobs are not "
    "recoverable); empty layers carry the registry's real empty blob a3ed95caeb02…",
    "tar-data.json.gz": "tar-split v0.9.4 stream (Docker 1.8.0–1.8.2): every entry has name and "
    "size keys, final remainder segment always written; gzip header as Go's gzip.NewWriter",
    "created times, build containers, build hostnames": "chosen",
    "host timeline": f"start {T_START}, pull 02:14:21–02:14:33, create {T_RUN_CREATE}, "
    f"start {T_RUN_START}, one curl at {T_LOG} (UTC; host clock CST)",
    "docker run": "docker run -d --name nginx nginx (no -p, no restart policy); json-file log",
    "container network": f"IP {CONTAINER_IP}, gateway {GATEWAY} (docker0 of 1.8), "
    "NetworkID/EndpointID chosen",
    "Pid": str(CONTAINER_PID),
    "HasBeenStartedBefore": "false: 1.8 sets it only in Container.Run (builder), not on API start",
    "resolv.conf": "nameserver 114.114.114.114 under a NetworkManager header",
    "BaseDeviceUUID": BASE_UUID,
    "deviceset-metadata next_device_id": "1: 1.8 saves this file when it stores the base UUID and "
    "at shutdown; the daemon has not been stopped since the first start",
    "pool layout": "base maps a scaled-down ext4 footprint (44 blocks); each snapshot shares its "
    "origin's mappings and CoWs the superblock and journal head, layers with files also an "
    "inode-table and a bitmap block plus new blocks for their data; data blocks handed out in "
    "write order; pool time +1 per snapshot",
    "pool superblock version": f"{POOL_VERSION} (thin-provisioning-tools' default)",
    "mount points": "devicemapper/mnt/<id>/ for every device Docker mounted (ten layers during "
    "the pull, <cid>-init, <cid>), all empty: nothing is mounted in an offline copy",
    "linkgraph.db": "page size 1024 (SQLite 3.8 default of 2015); written by the local SQLite",
    "file modes and mtimes": "as Docker 1.8 creates them under umask 022; mtimes from the timeline",
}


def truth(built: dict[str, Any]) -> dict[str, Any]:
    devices: list[Device] = built["devices"]
    layers = [
        {
            "id": la.id,
            "parent": la.parent or None,
            "device_id": la.device_id,
            "created": la.created,
            "created_by": " ".join(la.created_by),
            "layersize": la.size,
            "checksum": la.checksum,
            "diff_id": "sha256:" + hashlib.sha256(la.tar).hexdigest(),
            "tar_size": len(la.tar),
            "tar_split_entries": len(la.entries),
            "files": [m.name for m in la.members if m.kind == "file"],
        }
        for la in LAYERS
    ]
    return {
        "sample": NAME,
        "docker_version": DOCKER_VERSION,
        "layout": "legacy",
        "driver": "devicemapper",
        "article": ARTICLE,
        "images": [
            {"id": LAYERS[-1].id, "tags": ["nginx:latest"], "layers": [la.id for la in LAYERS]}
        ],
        "repositories": {"nginx": {"latest": LAYERS[-1].id}},
        "layers": layers,
        "containers": [
            {
                "id": CID,
                "name": "nginx",
                "image_id": LAYERS[-1].id,
                "image": "nginx",
                "state": "running",
                "pid": CONTAINER_PID,
                "command": "nginx -g 'daemon off;'",
                "path": "nginx",
                "args": ["-g", "daemon off;"],
                "created": T_RUN_CREATE,
                "started_at": T_RUN_START,
                "init_device": CID + "-init",
                "device_ids": {"init": 12, "rw": 13},
            }
        ],
        "devices": {
            dev.file_name: {
                "device_id": dev.device_id,
                "size": DEVICE_SIZE,
                "transaction_id": dev.transaction_id,
                "initialized": dev.initialized,
                "origin_device_id": dev.origin or None,
                "pool_transaction_id": dev.transaction_id - 1,
                "mapped_blocks": len(dev.mappings),
                "creation_time": dev.creation_time,
                "snap_time": dev.snap_time,
            }
            for dev in devices
        },
        "transaction_metadata": built["transaction"],
        "deviceset_metadata": built["deviceset"],
        "pool": {
            "transaction_id": devices[-1].transaction_id,
            "time": max(dev.creation_time for dev in devices),
            "data_block_size": DATA_BLOCK_SIZE,
            "nr_data_blocks": NR_DATA_BLOCKS,
            "data_blocks_used": len({m[0] for dev in devices for m in dev.mappings.values()}),
            "data_file_size": DATA_FILE_SIZE,
            "metadata_file_size": METADATA_FILE_SIZE,
            "version": POOL_VERSION,
            "thin_check": {
                "rc": built["pool"]["thin_check_rc"],
                "stderr": built["pool"]["thin_check_stderr"],
            },
            "thin_dump_device_ids": built["pool"]["thin_dump_device_ids"],
            "superblock": built["pool"]["superblock"],
        },
        "chosen": CHOSEN,
        "chosen_ids": chosen_ids(),
    }


def chosen_ids() -> dict[str, Any]:
    """Every id this script chose rather than took from the article (which gave prefixes only)."""
    return {
        "graph_ids": {
            la.id: (
                "article prefix " + la.id[:12] + " + chosen rest"
                if i in (0, len(LAYERS) - 1)
                else "chosen"
            )
            for i, la in enumerate(LAYERS)
        },
        "container_id": {CID: "article prefix " + CID[:12] + " + chosen rest"},
        "build_containers": {la.id: hexid(f"build-container/{i}") for i, la in enumerate(LAYERS)},
        "build_hostnames": {
            "debian": hexid("debian-build-hostname")[:12],
            "nginx": hexid("nginx-build-hostname")[:12],
        },
        "add_file_hash": ADD_FILE,
        "network_id": NETWORK_ID,
        "endpoint_id": ENDPOINT_ID,
        "base_device_uuid": BASE_UUID,
    }


def main(argv: list[str]) -> int:
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__)
        return 0 if len(argv) == 2 else 16
    here = Path(__file__).resolve().parent
    outdir = Path(argv[1]) if len(argv) == 2 else here
    outdir.mkdir(parents=True, exist_ok=True)
    for name in ("thin_restore", "thin_check", "thin_dump"):
        tool(name)
    build_layers()
    tmp = Path(tempfile.mkdtemp(prefix="dfx-legacy-dm."))
    try:
        built = build_tree(tmp, tmp)
        tarball = outdir / f"{NAME}.tar.gz"
        pack(tmp, tarball)
        (outdir / f"{NAME}.truth.json").write_text(
            json.dumps(truth(built), sort_keys=True, indent=1, ensure_ascii=False) + "\n"
        )
        print(f"{tarball} ({tarball.stat().st_size} bytes)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
