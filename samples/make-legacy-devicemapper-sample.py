#!/usr/bin/env python3
"""Build the legacy sample: a Docker 1.8.2 devicemapper root modelled on a well-known article.

The article is "docker 镜像与容器存储目录结构精讲" (CentOS 7, kernel 3.10.0-229.el7.x86_64,
Docker 1.8.2, devicemapper on loopback files): it lists /var/lib/docker after the first start,
after ``docker pull nginx`` and after a container was started. This script writes such a root:
``nginx:latest`` as ten v1 images, graph ids from ``22f3bf58cd09…`` (base) to ``c2c9e418b22c…``
(top), base thin device 1 and the layers on devices 2…11, a container ``814ec8083966…`` named
``nginx`` running ``nginx -g 'daemon off;'`` on devices 12 (``<cid>-init``) and 13 (``<cid>``),
``repositories-devicemapper``, ``linkgraph.db``, and the two loopback files of the thin pool.

The thin devices hold real ext4 filesystems, made without a kernel: the base device by
``mkfs.ext4`` as Docker 1.8 called it (CentOS 7's e2fsprogs 1.42 features, 100 GiB), every later
device a copy of its origin changed with ``debugfs -w`` exactly as Docker 1.8 changed it (a
layer's diff tar unpacked into ``rootfs/``, the init layer's files, what the container wrote and
deleted), then checked with ``e2fsck -fn``. Each layer is one list of tar members (:data:`LAYERS`)
from which the layer tar (as Go 1.4's archive/tar wrote it), its tar-split, its TarSum, the
debugfs commands and the truth file are all derived. The pool shares every 64 KiB block a
snapshot did not change with its origin; its metadata is written by Debian's ``thin_restore``
from an XML generated here, judged by ``thin_check`` and read back with ``thin_dump``.

Every value the article does not show is chosen here, deterministically (ids are sha256 of fixed
seed strings, times are fixed, mkfs runs with a fake time and fixed UUIDs); ``CHOSEN`` lists them
and the truth file repeats the list. Two runs write the same bytes.

Usage: python3 samples/make-legacy-devicemapper-sample.py [OUTDIR]     (default: samples/)

Needs Python 3.11 (stdlib only), GNU tar and gzip, e2fsprogs (mkfs.ext4, tune2fs, debugfs,
e2fsck), strace and thin-provisioning-tools (``apt-get install -y e2fsprogs strace
thin-provisioning-tools``). No root, no kernel module, nothing mounted. Writes
OUTDIR/legacy-1.8-devicemapper.tar.gz and OUTDIR/legacy-1.8-devicemapper.truth.json.
"""

from __future__ import annotations

import calendar
import gzip
import hashlib
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dmsample as dm  # noqa: E402

NAME = "legacy-1.8-devicemapper"
SEED = "docker-forensics/" + NAME
DOCKER_VERSION = "1.8.2"
DEVICE_SIZE = 107374182400  # dm.basesize default of Docker 1.8/1.9 (100 GiB)
DATA_FILE_SIZE = 107374182400  # loopback data file, 100 GiB sparse
METADATA_FILE_SIZE = 2147483648  # loopback metadata file, 2 GiB sparse
DATA_BLOCK_SIZE = dm.BLOCK_SECTORS  # sectors (64 KiB), dm.blocksize default
NR_DATA_BLOCKS = DATA_FILE_SIZE // dm.BLOCK_BYTES
POOL_VERSION = 2  # what thin-provisioning-tools write by default
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NGINX_VERSION = "1.9.5-1~jessie"
MAINTAINER = 'NGINX Docker Maintainers "docker-maint@nginx.com"'
ROOT = "/var/lib/docker"
#: the pid in the names of the PAX headers Go 1.4's tar writer made ("PaxHeaders.<pid>")
PAX_PID = 1180

#: CentOS 7's /etc/mke2fs.conf (e2fsprogs 1.42.9): what `mkfs.ext4` on the article's host used
MKE2FS_CONF = """[defaults]
	base_features = sparse_super,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext3 = {
		features = has_journal
	}
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,uninit_bg,dir_nlink,extra_isize
		auto_64-bit_support = 1
		inode_size = 256
	}
"""
#: e2fsprogs 1.42's journal for a 100 GiB filesystem (1.47 would make 512 MiB)
JOURNAL_MB = 128

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


def epoch_ns(ts: str) -> int:
    """Nanoseconds of an RFC 3339 UTC time such as 2015-10-13T02:16:41.078420312Z."""
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z", ts)
    assert m, ts
    sec = calendar.timegm(tuple(int(x) for x in m.groups()[:6]) + (0, 0, 0))
    return sec * dm.NS + int((m[7] or "0").ljust(9, "0")[:9])


def epoch(ts: str) -> int:
    return epoch_ns(ts) // dm.NS


gojson = dm.gojson

# --- the host's timeline (UTC; the host clock is CST, UTC+8) -------------------------------
T_START = "2015-10-13T02:10:23Z"  # first `systemctl start docker`: pool, base device
T_RUN_CREATE = "2015-10-13T02:16:40.418337615Z"
T_RUN_START = "2015-10-13T02:16:41.078420312Z"
T_EXEC = "2015-10-13T02:17:30.512604033Z"  # `docker exec nginx sh -c …` (see CONTAINER_STORY)
T_LOG = "2015-10-13T02:18:02.664013847Z"  # one `curl` from the host
T_POOL_LAST_WRITE = "2015-10-13T02:16:46Z"
CONTAINER_PID = 2936

CID = with_prefix(ARTICLE["container_id_prefix"], "container")
BASE_UUID = uuid_from("base-fs-uuid")  # the base filesystem's UUID, which Docker records
HASH_SEED = uuid_from("base-fs-hash-seed")
NETWORK_ID = hexid("bridge-network-id")
ENDPOINT_ID = hexid("container-endpoint-id")
CONTAINER_IP = "172.17.0.1"
GATEWAY = "172.17.42.1"
MAC = "02:42:ac:11:00:01"
RESOLV_CONF = "# Generated by NetworkManager\nnameserver 114.114.114.114\n"
NGINX_UID, NGINX_GID = 104, 107


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


# --- the layers: one list of tar members each --------------------------------------------
@dataclass
class Layer:
    key: str
    created: str
    created_by: list[str]
    members: list[dm.Member]
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
EXAMPLE_SSL_CONF = (
    b"# HTTPS server\n#\n#server {\n#    listen       443 ssl;\n#    server_name  localhost;\n"
    b"\n#    ssl_certificate      cert.pem;\n#    ssl_certificate_key  cert.key;\n#}\n"
)
INDEX_HTML = (
    b"<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n"
    b"<h1>Welcome to nginx!</h1>\n<p>Synthetic stand-in for the packaged page.</p>\n"
    b"</body>\n</html>\n"
)
PASSWD = (
    b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    b"bin:x:2:2:bin:/bin:/usr/sbin/nologin\nsys:x:3:3:sys:/dev:/usr/sbin/nologin\n"
    b"sync:x:4:65534:sync:/bin:/bin/sync\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
    b"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = (
    b"root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\nshadow:x:42:\n"
    b"www-data:x:33:\nnogroup:x:65534:\n"
)
SHADOW = b"".join(
    name + b":*:16699:0:99999:7:::\n"
    for name in (b"root", b"daemon", b"bin", b"sys", b"sync", b"www-data", b"nobody")
)
NGINX_PASSWD = PASSWD + b"nginx:x:%d:%d:nginx user,,,:/nonexistent:/bin/false\n" % (
    NGINX_UID,
    NGINX_GID,
)
NGINX_GROUP = GROUP + b"nginx:x:%d:\n" % NGINX_GID
NGINX_SHADOW = SHADOW + b"nginx:!:16700:0:99999:7:::\n"
HOSTS = (
    b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    b"fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
    b"ff02::2\tip6-allrouters\n"
)
GUNZIP = b"#!/bin/sh\nPATH=${GZIP_BINDIR-'/bin'}:$PATH\nexec gzip -d \"$@\"\n"
#: struct vfs_cap_data, revision 2, effective: cap_net_raw+ep (what jessie's ping carried)
CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")


def synthetic_bytes(label: str, size: int) -> bytes:
    """Deterministic filler standing in for a binary the sample does not carry."""
    out = bytearray()
    n = 0
    while len(out) < size:
        out += hashlib.sha256(f"{SEED}/blob/{label}/{n}".encode()).digest()
        n += 1
    return bytes(out[:size])


def elf_like(label: str) -> bytes:
    """600 KiB standing in for /usr/sbin/nginx: code with two runs of zero pages, as a
    linked binary has (debugfs leaves all-zero 4 KiB blocks as holes: a sparse file across
    ten 64 KiB blocks)."""
    return (
        synthetic_bytes(label + "/text", 131072)
        + bytes(131072)
        + synthetic_bytes(label + "/rodata", 196608)
        + bytes(65536)
        + synthetic_bytes(label + "/data", 90112)
    )


# Member constructors. mtime 0 means: the layer's time for files, and for directories the
# layer's time when a child of theirs changes in the layer, else their mtime in the parent.
def d(path: str, mode: int = 0o755, *, mtime: str = "") -> dm.Member:
    return dm.Member(f"{path}/", b"5", dm.TYPE_BITS["dir"] | mode, mtime=_t(mtime))


def f(
    path: str,
    data: bytes,
    mode: int = 0o644,
    *,
    mtime: str = "",
    uid: int = 0,
    gid: int = 0,
    xattrs: dict[str, bytes] | None = None,
) -> dm.Member:
    return dm.Member(
        path,
        b"0",
        dm.TYPE_BITS["file"] | mode,
        uid,
        gid,
        len(data),
        _t(mtime),
        xattrs=xattrs or {},
        data=data,
    )


def ln(path: str, target: str, *, mtime: str = "") -> dm.Member:
    return dm.Member(path, b"2", dm.TYPE_BITS["symlink"] | 0o777, mtime=_t(mtime), linkname=target)


def hard(path: str, target: str, mode: int, *, mtime: str = "") -> dm.Member:
    return dm.Member(path, b"1", dm.TYPE_BITS["file"] | mode, mtime=_t(mtime), linkname=target)


def char(path: str, major: int, minor: int, mode: int, *, mtime: str = "") -> dm.Member:
    m = dm.Member(path, b"3", dm.TYPE_BITS["char"] | mode, mtime=_t(mtime))
    m.devmajor, m.devminor = major, minor
    return m


def fifo(path: str, mode: int, *, mtime: str = "") -> dm.Member:
    return dm.Member(path, b"6", dm.TYPE_BITS["fifo"] | mode, mtime=_t(mtime))


def wh(path: str) -> dm.Member:
    """A whiteout as Docker 1.8's ExportChanges wrote it: a bare header (typeflag NUL, mode 0)
    named ``.wh.<name>``, mtime the time of the export."""
    parent, _, name = path.rpartition("/")
    return dm.Member(f"{parent}/.wh.{name}" if parent else f".wh.{name}", b"\0", 0)


def _t(ts: str) -> int:
    return epoch(ts) if ts else 0


ADD_FILE = hexid("debian-add-file")
T_DEB = "2015-09-21T20:14:58Z"  # when the debian rootfs tarball was made
LAYERS: list[Layer] = [
    Layer(
        "debian-add",
        "2015-09-21T20:15:47.433616227Z",
        ["/bin/sh", "-c", f"#(nop) ADD file:{ADD_FILE} in /"],
        [
            d("bin", mtime=T_DEB),
            f("bin/dash", synthetic_bytes("dash", 1800), 0o755, mtime="2014-11-08T00:15:57Z"),
            f("bin/gunzip", GUNZIP, 0o755, mtime="2015-01-21T03:22:47Z"),
            f(
                "bin/ping",
                synthetic_bytes("ping", 2400),
                0o755,
                mtime="2014-10-04T12:42:40Z",
                xattrs={"security.capability": CAP_NET_RAW},
            ),
            ln("bin/sh", "dash", mtime=T_DEB),
            f("bin/su", synthetic_bytes("su", 1500), 0o4755, mtime="2014-11-19T12:53:09Z"),
            hard("bin/uncompress", "bin/gunzip", 0o755, mtime="2015-01-21T03:22:47Z"),
            d("dev", mtime=T_DEB),
            char("dev/null", 1, 3, 0o666, mtime=T_DEB),
            d("etc", mtime=T_DEB),
            f("etc/.pwd.lock", b"", 0o600, mtime=T_DEB),
            d("etc/apt", mtime=T_DEB),
            f("etc/apt/sources.list", SOURCES_LIST, mtime=T_DEB),
            f("etc/debian_version", b"8.2\n", mtime="2015-09-05T20:00:00Z"),
            f("etc/group", GROUP, mtime=T_DEB),
            f("etc/hostname", b"localhost\n", mtime=T_DEB),
            f("etc/hosts", HOSTS, mtime=T_DEB),
            f("etc/os-release", OS_RELEASE, mtime="2015-09-05T20:00:00Z"),
            f("etc/passwd", PASSWD, mtime=T_DEB),
            f("etc/shadow", SHADOW, 0o640, gid=42, mtime=T_DEB),
            d("proc", 0o555, mtime=T_DEB),
            d("root", 0o700, mtime=T_DEB),
            d("run", mtime=T_DEB),
            fifo("run/initctl", 0o600, mtime=T_DEB),
            d("tmp", 0o1777, mtime=T_DEB),
            d("usr", mtime=T_DEB),
            d("usr/sbin", mtime=T_DEB),
            d("var", mtime=T_DEB),
            d("var/lib", mtime=T_DEB),
            d("var/lib/apt", mtime=T_DEB),
            d("var/lib/apt/lists", mtime=T_DEB),
            f("var/lib/apt/lists/lock", b"", 0o640, mtime=T_DEB),
            d("var/lib/apt/lists/partial", 0o700, mtime=T_DEB),
            d("var/log", mtime=T_DEB),
            ln("var/run", "/run", mtime=T_DEB),
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
            f("etc/group", NGINX_GROUP),
            d("etc/nginx"),
            d("etc/nginx/conf.d"),
            f("etc/nginx/conf.d/default.conf", DEFAULT_CONF),
            f("etc/nginx/conf.d/example_ssl.conf", EXAMPLE_SSL_CONF),
            f("etc/nginx/nginx.conf", NGINX_CONF),
            f("etc/passwd", NGINX_PASSWD),
            f("etc/shadow", NGINX_SHADOW, 0o640, gid=42),
            d("usr"),
            d("usr/sbin"),
            f("usr/sbin/nginx", elf_like("nginx"), 0o755),
            d("usr/share"),
            d("usr/share/nginx"),
            d("usr/share/nginx/html"),
            f("usr/share/nginx/html/index.html", INDEX_HTML),
            d("var"),
            d("var/cache"),
            d("var/cache/nginx"),
            d("var/lib"),
            d("var/lib/apt"),
            d("var/lib/apt/lists"),
            wh("var/lib/apt/lists/lock"),
            wh("var/lib/apt/lists/partial"),
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
#: the layer tars were exported by the builder's daemon this long after each layer was made
#: (the whiteout headers carry that time)
EXPORT_DELAY = 95


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


# --- layer tars as Go 1.4's archive/tar wrote them (Docker 1.8's ExportChanges) ------------
def _go_octal(buf: bytearray, off: int, width: int, value: int) -> None:
    """tw.octal: zero-padded octal digits and a NUL (checksum: 6 digits, NUL, space)."""
    digits = format(value, "o").rjust(width - 1, "0").encode()
    assert len(digits) < width, value
    buf[off : off + len(digits)] = digits


def _go_str(buf: bytearray, off: int, width: int, text: str) -> None:
    raw = text.encode()
    assert len(raw) <= width and raw.isascii(), text  # else Go 1.4 would add a PAX record
    buf[off : off + len(raw)] = raw


def go14_header(m: dm.Member) -> bytes:
    h = bytearray(512)
    _go_str(h, 0, 100, m.name)
    for off, width, value in (
        (100, 8, m.mode),
        (108, 8, m.uid),
        (116, 8, m.gid),
        (124, 12, m.size),
        (136, 12, m.mtime),
    ):
        _go_octal(h, off, width, value)
    h[156] = m.typeflag[0]
    _go_str(h, 157, 100, m.linkname)
    h[257:265] = b"ustar\x0000"
    _go_octal(h, 329, 8, m.devmajor)
    _go_octal(h, 337, 8, m.devminor)
    _go_octal(h, 148, 7, sum(h[:148]) + 8 * 0x20 + sum(h[156:]))
    h[155] = 0x20
    return bytes(h)


def _pax_record(key: str, value: bytes) -> bytes:
    msg = key.encode() + b"=" + value
    size = len(msg) + 2
    size += len(str(size))
    rec = b"%d %s\n" % (size, msg)
    if len(rec) != size:
        rec = b"%d %s\n" % (len(rec), msg)
    return rec


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def go14_tar(members: list[dm.Member]) -> bytes:
    """The tar Go 1.4's tar.Writer makes of these headers: ustar with ``ustar\\x0000``, octal
    fields, xattrs in a PAX header named ``<dir>/PaxHeaders.<pid>/<name>``, two zero blocks at
    the end and no record padding (an empty layer is 1024 zero bytes)."""
    out = bytearray()
    for m in members:
        if m.xattrs:
            records = b"".join(
                _pax_record(f"SCHILY.xattr.{k}", v) for k, v in sorted(m.xattrs.items())
            )
            parent, _, name = m.name.rstrip("/").rpartition("/")
            pax_name = "/".join(p for p in (parent, f"PaxHeaders.{PAX_PID}", name) if p)[:100]
            ext = dm.Member(pax_name, b"x", 0, size=len(records), mtime=m.mtime)
            out += go14_header(ext) + _padded(records)
        out += go14_header(m) + _padded(m.data)
    return bytes(out + bytes(1024))


def change_path(m: dm.Member) -> str:
    """The path ExportChanges sorted by: a whiteout sorts as the path it deletes."""
    parent, _, name = m.path.rpartition("/")
    if name.startswith(".wh."):
        name = name[4:]
    return "/" + "/".join(p for p in (parent, name) if p)


def go_gzip(data: bytes) -> bytes:
    """gzip.NewWriter's header: no name, mtime 0, XFL 0, OS 255 (the deflate stream differs)."""
    out = bytearray(gzip.compress(data, compresslevel=6, mtime=0))
    out[8:10] = b"\x00\xff"  # XFL 0, OS 255 ("unknown"), as Go writes; zlib writes OS 3
    return bytes(out)


def resolve_times(layer: Layer, image: dm.Tree) -> None:
    """Fill in the headers' unset mtimes from the builder's tree before the layer (``image``):
    files get the layer's time; a directory the layer's time when a name directly in it
    changes in this layer, else the mtime it had."""
    when = epoch(layer.created)
    changed_parents = {dm.parent_of(m.path) for m in layer.members if m.kind != "dir"}
    changed_parents |= {dm.parent_of(m.path) for m in layer.members if m.path not in image}
    for m in layer.members:
        if m.name.rpartition("/")[2].startswith(".wh.") and m.typeflag == b"\0":
            m.mtime = when + EXPORT_DELAY
        elif not m.mtime:
            if m.kind == "dir" and m.path in image and m.path not in changed_parents:
                m.mtime = image[m.path].mtime // dm.NS
            else:
                m.mtime = when
        if m.kind == "hardlink":
            target = next(x for x in layer.members if x.path == dm.clean_path(m.linkname))
            m.mode, m.uid, m.gid, m.mtime = target.mode, target.uid, target.gid, target.mtime


def build_layer_tar(layer: Layer, image: dm.Tree) -> None:
    resolve_times(layer, image)
    layer.members.sort(key=change_path)
    layer.tar = go14_tar(layer.members)
    back = dm.read_tar(layer.tar)
    assert [(m.name, m.mode, m.size, m.data, m.xattrs) for m in back] == [
        (m.name, m.mode, m.size, m.data, m.xattrs) for m in layer.members
    ], layer.key
    layer.entries = dm.tar_split_entries(layer.tar)
    by_name = {m.name: m.data for m in layer.members}
    assert dm.reassemble(layer.entries, by_name.__getitem__) == layer.tar, layer.key
    # devicemapper is a naive-diff driver: ApplyDiff returns the sum of the header sizes
    layer.size = sum(m.size for m in back)


def build_layer_json(i: int, layer: Layer, state: dict[str, Any]) -> None:
    """The v1 image JSON (1.8.0–1.8.2 v2 pull: re-marshalled from v1Compatibility)."""
    by = layer.created_by[2]
    if layer.build == "nginx" and state["env"] is None:
        state["env"] = [PATH_ENV]
    if by.startswith("#(nop) CMD"):
        state["cmd"] = (
            json.loads(by.removeprefix("#(nop) CMD "))
            if "/bin/bash" in by
            else ["nginx", "-g", "daemon off;"]
        )
    if by.startswith("#(nop) ENV") and state["env"] is not None:
        state["env"] = [*state["env"], f"NGINX_VERSION={NGINX_VERSION}"]
    if by.startswith("#(nop) EXPOSE"):
        state["exposed"] = {"443/tcp": {}, "80/tcp": {}}
    if by.startswith("#(nop) MAINTAINER"):
        state["author"] = MAINTAINER
    host = hexid(f"{layer.build}-build-hostname")[:12]
    on_build: list[str] | None = [] if layer.build == "nginx" else None
    env, cmd, exposed = state["env"], state["cmd"], state["exposed"]
    image: dict[str, Any] = {"id": layer.id}
    if layer.parent:
        image["parent"] = layer.parent
    image["created"] = layer.created
    image["container"] = hexid(f"build-container/{i}")
    image["container_config"] = run_config(
        host, env=env, cmd=layer.created_by, image=layer.parent, exposed=exposed, on_build=on_build
    )
    image["docker_version"] = DOCKER_VERSION
    if state["author"]:
        image["author"] = state["author"]
    image["config"] = run_config(
        host, env=env, cmd=cmd, image=layer.parent, exposed=exposed, on_build=on_build
    )
    image["architecture"] = "amd64"
    image["os"] = "linux"
    image["Size"] = layer.size
    layer.json_text = gojson(image) + "\n"  # graph.storeImage: json.NewEncoder(f).Encode


# --- the devices' filesystems, as trees -----------------------------------------------------
class Clock:
    """Kernel times of one run of work: each step a little later (nanoseconds)."""

    def __init__(self, start: int, step: int = 1_250_311) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


@dataclass
class Stage:
    """One device's filesystem: its tree after each step of work, and what that work was."""

    name: str  # the metadata file name
    device_id: int
    origin: int
    record_time: str
    mount_ns: int  # 0: never mounted (the base)
    trees: list[dm.Tree]  # before, then after each phase of work
    done_ns: int  # when the device was unmounted (the superblock's last write time)
    mount_count: int = 0
    last_mounted: str = ""
    deleted: list[dict[str, Any]] = field(default_factory=list)

    phase_ns: list[int] = field(default_factory=list)  # when each phase began

    @property
    def tree(self) -> dm.Tree:
        return self.trees[-1]


def _gone(tree: dm.Tree, path: str, why: str, t: int) -> list[dict[str, Any]]:
    """The inodes that removing ``path`` frees (a hardlinked file keeps its inode)."""
    out = []
    for p in [path, *tree.below(path)]:
        inode = tree[p]
        if inode.kind != "dir" and sum(1 for i in tree.paths.values() if i is inode) > 1:
            continue
        rec: dict[str, Any] = {"path": p.removeprefix("rootfs/"), "type": inode.kind, "why": why}
        if inode.kind == "file":
            rec |= {"size": inode.size, "sha256": dm.sha256hex(inode.data)}
        rec["deleted"], rec["deleted_ns"] = dm.split_ns(t)
        out.append(rec)
    return out


def apply_layer(tree: dm.Tree, members: list[dm.Member], clock: Clock) -> list[dict[str, Any]]:
    """Docker 1.8's UnpackLayer into ``rootfs/`` (chrooted there): a whiteout removes its
    path; an existing path is removed unless both are directories; a new inode gets the
    header's mode, owner, xattrs and mtime (atime: UTIME_OMIT, so the time of creation);
    directories get their mtime back at the end. ``ctime`` is when each entry was written."""
    deleted: list[dict[str, Any]] = []
    dirs: list[tuple[dm.Inode, int]] = []
    for m in members:
        t = clock()
        path = f"rootfs/{m.path}"
        parent, _, name = path.rpartition("/")
        if name.startswith(".wh..wh."):
            continue
        if name.startswith(".wh."):
            victim = f"{parent}/{name[4:]}"
            if victim in tree:
                deleted += _gone(tree, victim, "whiteout", t)
                tree.remove(victim, t)
            continue
        if path in tree and not (tree[path].kind == "dir" and m.kind == "dir"):
            deleted += _gone(tree, path, "replaced", t)
            tree.remove(path, t)
        perm = m.mode & 0o7777
        if m.kind == "hardlink":
            tree.link(path, f"rootfs/{dm.clean_path(m.linkname)}", t)
            inode = tree[path]
        elif m.kind == "dir" and path in tree:
            inode = tree[path]
        else:
            inode = dm.Inode(
                m.kind,
                perm,
                data=m.data,
                target=m.linkname if m.kind == "symlink" else "",
                rdev=(m.devmajor, m.devminor),
                xattrs=dict(m.xattrs),
            )
            tree.add(path, inode, t)
        inode.uid, inode.gid, inode.ctime = m.uid, m.gid, t
        if m.kind != "symlink":
            inode.mode = perm
        if m.kind == "dir":
            dirs.append((inode, m.mtime * dm.NS))
        else:
            inode.mtime = m.mtime * dm.NS
    for inode, mtime in dirs:
        inode.mtime = mtime
    return deleted


def mkfs_tree(t: int) -> dm.Tree:
    """What mkfs.ext4 leaves: the root and lost+found, all times the (fake) mkfs time."""
    tree = dm.Tree(dm.Inode("dir", 0o755, mtime=t, atime=t, ctime=t, crtime=t))
    tree.add("lost+found", dm.Inode("dir", 0o700), t)
    tree[""].mtime = tree[""].ctime = t
    return tree


def mount_point(name: str) -> str:
    """The mount point as ext4 records it in s_last_mounted: strlcpy into 64 bytes, so the
    first 63 characters of ``/var/lib/docker/devicemapper/mnt/<id>``."""
    return f"{ROOT}/devicemapper/mnt/{name}"[:63]


def first_get(tree: dm.Tree, layer_id: str, clock: Clock) -> None:
    """The devmapper driver's Get on a device without them: ``rootfs/`` (0755) and ``id``
    (0600, the id of the device being mounted; written once, so descendants inherit it)."""
    tree.add("rootfs", dm.Inode("dir", 0o755), clock())
    tree.add("id", dm.Inode("file", 0o600, data=layer_id.encode()), clock())


# What Docker 1.8's graph.SetupInitLayer makes in the container's -init layer, in this order
# (Go iterates its map in a random order): each path's components are unlinked first (which
# removes a file the image has there), then, when nothing is there, a directory (0755), an
# empty file (created 0755) or the symlink /etc/mtab -> /proc/mounts.
INIT_LAYER = [
    ("dev/pts", "dir"),
    ("dev/shm", "dir"),
    ("proc", "dir"),
    ("sys", "dir"),
    (".dockerinit", "file"),
    (".dockerenv", "file"),
    ("etc/resolv.conf", "file"),
    ("etc/hosts", "file"),
    ("etc/hostname", "file"),
    ("dev/console", "file"),
    ("etc/mtab", "/proc/mounts"),
]


def setup_init_layer(tree: dm.Tree, clock: Clock) -> list[dict[str, Any]]:
    deleted: list[dict[str, Any]] = []
    for rel, kind in INIT_LAYER:
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            path = "rootfs/" + "/".join(parts[:i])
            if path in tree and tree[path].kind != "dir":  # syscall.Unlink
                t = clock()
                deleted += _gone(tree, path, "init layer", t)
                tree.remove(path, t)
        path = f"rootfs/{rel}"
        if path in tree:
            continue
        t = clock()
        if kind == "dir":
            tree.add(path, dm.Inode("dir", 0o755), t)
        elif kind == "file":
            tree.add(path, dm.Inode("file", 0o755), t)
        else:
            tree.add(path, dm.Inode("symlink", 0o777, target=kind), t)
    return deleted


EXEC_COMMAND = (
    "docker exec nginx sh -c 'echo x > /tmp/upload.tmp && rm /tmp/upload.tmp && "
    'sed -i "s/Synthetic stand-in/Edited stand-in/" /usr/share/nginx/html/index.html && '
    "rm /etc/nginx/conf.d/example_ssl.conf && echo checked > /root/notes.txt'"
)
CONTAINER_STORY = [
    f"{T_RUN_START}: nginx (pid 1 in the container) makes its five temp dirs under "
    "/var/cache/nginx (0700, owner nginx) and writes /var/run/nginx.pid (/run is where "
    "/var/run points)",
    f"{T_EXEC}: {EXEC_COMMAND}: a file written and deleted in /tmp, index.html rewritten by "
    "sed -i (a new inode renamed over the old), an image file deleted, a new file in /root",
]


def container_work(tree: dm.Tree, start: int, exec_at: int) -> tuple[list[dm.Tree], list[dict]]:
    """What the container wrote and deleted, as successive trees (each step a debugfs phase,
    so a file written and then deleted leaves a deleted inode behind)."""
    trees = [tree]
    deleted: list[dict[str, Any]] = []
    clock = Clock(start)
    tree = tree.clone()
    for name in ("client", "proxy", "fastcgi", "uwsgi", "scgi"):
        inode = tree.add(f"rootfs/var/cache/nginx/{name}_temp", dm.Inode("dir", 0o700), clock())
        inode.uid = NGINX_UID
        inode.ctime = clock()
    tree.add("rootfs/run/nginx.pid", dm.Inode("file", 0o644, data=b"1\n"), clock())
    trees.append(tree)
    clock = Clock(exec_at)
    tree = tree.clone()
    tree.add("rootfs/tmp/upload.tmp", dm.Inode("file", 0o644, data=b"x\n"), clock())
    trees.append(tree)
    tree = tree.clone()
    t = clock()
    deleted += _gone(tree, "rootfs/tmp/upload.tmp", "container", t)
    tree.remove("rootfs/tmp/upload.tmp", t)
    page = "rootfs/usr/share/nginx/html/index.html"
    edited = tree[page].data.replace(b"Synthetic stand-in", b"Edited stand-in")
    tmp = "rootfs/usr/share/nginx/html/sedXq3Lc1"
    tree.add(tmp, dm.Inode("file", 0o644, data=edited), clock())
    t = clock()
    deleted += _gone(tree, page, "container", t)
    tree.paths[page] = tree.paths.pop(tmp)  # rename(2) over the page
    tree[page].ctime = t
    tree.touch_parent(page, t)
    t = clock()
    deleted += _gone(tree, "rootfs/etc/nginx/conf.d/example_ssl.conf", "container", t)
    tree.remove("rootfs/etc/nginx/conf.d/example_ssl.conf", t)
    tree.add("rootfs/root/notes.txt", dm.Inode("file", 0o644, data=b"checked\n"), clock())
    trees.append(tree)
    return trees, deleted


def build_stages() -> list[Stage]:
    """The filesystems of all 13 devices, as Docker 1.8 left them (see the module doc)."""
    base_t = epoch_ns(T_START)
    stages = [Stage("base", 1, 0, T_START, 0, [mkfs_tree(base_t)], base_t)]
    image = dm.Tree(dm.Inode("dir", 0o755))  # the builder's view, for the headers' times
    state: dict[str, Any] = {"env": None, "cmd": None, "exposed": None, "author": ""}
    for i, (layer, pulled) in enumerate(zip(LAYERS, PULL_TIMES, strict=True)):
        build_layer_tar(layer, image)
        build_layer_json(i, layer, state)
        parent = stages[-1]
        tree = parent.tree.clone()
        mount = epoch_ns(pulled) + 203_117_000 + i * 1_000_003
        clock = Clock(mount)
        if i == 0:
            first_get(tree, layer.id, clock)
        deleted = apply_layer(tree, layer.members, clock)
        stages.append(
            Stage(
                layer.id,
                layer.device_id,
                parent.device_id,
                pulled,
                mount,
                [parent.tree, tree],
                clock() + 40_000_000,
                parent.mount_count + 1,
                mount_point(layer.id),
                deleted,
                [mount],
            )
        )
        before = image
        image = dm.subtree(tree, "rootfs").clone()
        check_layer_is_its_diff(layer, before, image)
    top = stages[-1]
    create = epoch_ns(T_RUN_CREATE) + 31_000_117
    clock = Clock(create)
    init_tree = top.tree.clone()
    init_deleted = setup_init_layer(init_tree, clock)
    init = Stage(
        f"{CID}-init",
        12,
        top.device_id,
        T_RUN_CREATE,
        create,
        [top.tree, init_tree],
        clock() + 20_000_000,
        top.mount_count + 1,
        mount_point(f"{CID}-init"),
        init_deleted,
        [create],
    )
    stages.append(init)
    start = epoch_ns(T_RUN_START) + 12_345_013
    trees, deleted = container_work(init.tree, start + 8_000_000, epoch_ns(T_EXEC))
    stages.append(
        Stage(
            CID,
            13,
            12,
            T_RUN_CREATE,
            start,
            trees,
            epoch_ns(T_EXEC) + 90_000_000,
            init.mount_count + 1,
            mount_point(CID),
            deleted,
            [start, epoch_ns(T_EXEC), epoch_ns(T_EXEC)],
        )
    )
    return stages


def check_layer_is_its_diff(layer: Layer, before: dm.Tree, after: dm.Tree) -> None:
    """The layer's members are exactly what Docker's naive diff of the two trees exports."""
    want = []
    for m in layer.members:
        path = change_path(m)
        kind = "D" if m.typeflag == b"\0" and m.name.rpartition("/")[2].startswith(".wh.") else ""
        want.append((kind or ("C" if path[1:] in before else "A"), path))
    got = sorted(dm.naive_changes(before, after), key=lambda c: c[1])
    assert got == want, (layer.key, got, want)


# --- the device images: mkfs.ext4, then debugfs ---------------------------------------------
def make_base_fs(image: Path, work: Path) -> set[int]:
    """Docker 1.8's createFilesystem on the base device, with CentOS 7's mke2fs.conf; returns
    the 64 KiB blocks mkfs and tune2fs wrote (zeroed inode tables and journal included)."""
    with image.open("wb") as fh:
        fh.truncate(DEVICE_SIZE)
    conf = work / "mke2fs.conf"
    conf.write_text(MKE2FS_CONF)
    env = {"MKE2FS_CONFIG": str(conf), "E2FSPROGS_FAKE_TIME": str(epoch(T_START)), "TZ": "UTC"}
    options = "nodiscard,lazy_itable_init=0,lazy_journal_init=0"
    mkfs = [
        dm.tool("mkfs.ext4", "e2fsprogs"),
        "-q",
        "-F",
        "-U",
        BASE_UUID,
        "-J",
        f"size={JOURNAL_MB}",
        "-E",
        f"{options},hash_seed={HASH_SEED},root_owner=0:0",
        str(image),
    ]
    log = work / "strace.log"
    written = dm.traced_writes(mkfs, image, env, log)
    tune = [dm.tool("tune2fs", "e2fsprogs"), "-c", "-1", "-i", "0", str(image)]
    written |= dm.traced_writes(tune, image, env, log)
    # mkfs "wrote" its zeros with fallocate: copy to drop those extents from the scratch file
    compact = image.with_suffix(".compact")
    dm.run(["cp", "--sparse=always", str(image), str(compact)])
    compact.replace(image)
    return written


def build_images(stages: list[Stage], work: Path) -> tuple[dict[int, Path], set[int]]:
    images: dict[int, Path] = {}
    staging = work / "staging"
    staging.mkdir()
    base = work / "device-1.img"
    written = make_base_fs(base, work)
    images[1] = base
    for st in stages[1:]:
        image = work / f"device-{st.device_id}.img"
        dm.run(["cp", "--sparse=always", str(images[st.origin]), str(image)])
        script = dm.Ext4Script(staging)
        script.emit(f"set_current_time @{st.mount_ns // dm.NS}")
        script.emit(f"ssv mnt_count {st.mount_count}")
        script.emit(f"ssv mtime @{st.mount_ns // dm.NS}")
        script.emit(f"ssv last_mounted {st.last_mounted}")
        for before, after, when in zip(st.trees[:-1], st.trees[1:], st.phase_ns, strict=True):
            script.emit(f"set_current_time @{when // dm.NS}")
            script.transition(before, after)
        script.run(image, st.done_ns)
        dm.e2fsck_clean(image)
        images[st.device_id] = image
    return images, written


# --- the pool ------------------------------------------------------------------------------
def build_pool(stages: list[Stage], images: dict[int, Path], written: set[int]) -> dm.Pool:
    pool = dm.Pool()
    for n, st in enumerate(stages):
        dev = dm.Device(
            "" if st.name == "base" else st.name,
            st.device_id,
            st.origin,
            st.record_time,
            DEVICE_SIZE,
            image=images[st.device_id],
            initialized=st.name == "base",
            written=written if st.name == "base" else set(),
        )
        # Docker's protocol: each create is one transaction T -> T+1 (details keep T, JSON T+1)
        dev.transaction_id = n + 1
        pool.add(dev)
    return pool


def write_pool(dm_dir: Path, pool: dm.Pool, scratch: Path) -> dict[str, Any]:
    pool_dir = dm_dir / "devicemapper"
    pool_dir.mkdir(mode=0o700)
    data = pool_dir / "data"
    metadata = pool_dir / "metadata"
    last = max(dev.transaction_id for dev in pool.devices)
    xml = pool.xml(last, NR_DATA_BLOCKS, POOL_VERSION)
    result = dm.write_pool_metadata(metadata, xml, METADATA_FILE_SIZE, scratch)
    result["data_blocks_written"] = pool.write_data(data, DATA_FILE_SIZE)
    for path in (data, metadata):
        path.chmod(0o600)
    assert result["thin_dump_device_ids"] == sorted(d.device_id for d in pool.devices)
    return result


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


# --- the tree ------------------------------------------------------------------------------
def put(path: Path, data: bytes, mode: int, when: str, stamps: dict[Path, str]) -> None:
    path.write_bytes(data)
    path.chmod(mode)
    stamps[path] = when


def mkdir(path: Path, mode: int, when: str, stamps: dict[Path, str]) -> None:
    path.mkdir(mode=mode)
    path.chmod(mode)
    stamps[path] = when


def build_tree(top: Path, work: Path) -> dict[str, Any]:
    stages = build_stages()
    images, written = build_images(stages, work)
    pool = build_pool(stages, images, written)
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
        stream = dm.tar_split_stream(layer.entries, legacy_keys=True)
        put(g / "tar-data.json.gz", go_gzip(stream), 0o600, when, stamps)
        layer.checksum = dm.tarsum(dm.read_tar(layer.tar), layer.json_text.encode())
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

    dm_dir = root / "devicemapper"
    mkdir(dm_dir, 0o700, PULL_TIMES[0], stamps)  # mnt/ appeared with the first mount
    meta = dm_dir / "metadata"
    mkdir(meta, 0o700, T_RUN_CREATE, stamps)
    mnt = dm_dir / "mnt"
    mkdir(mnt, 0o755, T_RUN_CREATE, stamps)
    for dev in pool.devices:
        record = dev.record()
        put(meta / dev.file_name, gojson(record).encode(), 0o600, dev.created, stamps)
        if dev.hash:  # driver.Get made the mount point; Put unmounts but leaves the directory
            mkdir(mnt / dev.hash, 0o755, dev.created, stamps)
    last = pool.devices[-1]
    txn = {
        "open_transaction_id": last.transaction_id,
        "device_hash": last.hash,
        "device_id": last.device_id,
    }
    put(meta / "transaction-metadata", gojson(txn).encode(), 0o600, last.created, stamps)
    # saved when the base UUID was stored (first start) and on shutdown only: still 1 here
    dsm = {"next_device_id": 1, "BaseDeviceUUID": BASE_UUID}
    put(meta / "deviceset-metadata", gojson(dsm).encode(), 0o600, T_START, stamps)

    pool_result = write_pool(dm_dir, pool, work)
    stamps[dm_dir / "devicemapper"] = T_START
    stamps[dm_dir / "devicemapper" / "data"] = T_POOL_LAST_WRITE
    stamps[dm_dir / "devicemapper" / "metadata"] = T_POOL_LAST_WRITE

    for path in sorted(stamps, key=lambda p: len(p.parts), reverse=True):
        t = epoch(stamps[path])
        os.utime(path, (t, t), follow_symlinks=False)
    return {
        "stages": stages,
        "pool": pool,
        "pool_result": pool_result,
        "deviceset": dsm,
        "transaction": txn,
    }


CHOSEN = {
    "graph ids": "the base and top ids are the article's 12-hex prefixes completed with "
    "sha256('docker-forensics/legacy-1.8-devicemapper/layer/N'); the eight ids between them "
    "are that sha256 itself",
    "container id": "814ec8083966 completed with sha256('…/container')",
    "image history": "modelled on docker-library/nginx 1.9.5 on debian:jessie (Sept 2015), shaped "
    "to the article's ten layers: the two ln -sf are one RUN and there is no VOLUME "
    "(volumes/ stays empty, as in the article's tree)",
    "layer content": "small synthetic trees (LAYERS in the script): a debian-like base with a "
    "setuid su, a ping with security.capability cap_net_raw+ep, a hardlink pair, a char device, "
    "a fifo, empty files, a /var/run symlink; apt-key, sources.list, an apt-get layer that "
    "changes passwd/group/shadow, adds nginx (a 600 KiB binary with zero pages) and whiteouts "
    "two apt lists entries; two log symlinks; five metadata-only layers",
    "layer tars": "what Docker 1.8's naive-diff ExportChanges writes with Go 1.4's archive/tar: "
    "changes sorted by path, parents of changes as entries, ustar headers with type bits in the "
    "mode, empty uname/gname, xattrs in a PAX header named <dir>/PaxHeaders.1180/<name>, "
    "whiteouts as bare headers (typeflag NUL, mode 0, the export time), no record padding; the "
    "script checks that the naive diff of the two device trees gives exactly these entries",
    "checksum": "TarSum version 0 of the layer tar with the image json as extra payload "
    "(tarsum+sha256:…), as a v1 registry push computed it; a real 1.8.2 v2 pull would have "
    "written the registry's compressed blob digest, which cannot be recomputed locally",
    "tar-data.json.gz": "tar-split v0.9.4 stream (Docker 1.8.0–1.8.2): every entry has name and "
    "size keys, final remainder segment always written; gzip header as Go's gzip.NewWriter",
    "created times, build containers, build hostnames": "chosen",
    "host timeline": f"start {T_START}, pull 02:14:21–02:14:33, create {T_RUN_CREATE}, "
    f"start {T_RUN_START}, exec {T_EXEC}, one curl at {T_LOG} (UTC; host clock CST)",
    "docker run": "docker run -d --name nginx nginx (no -p, no restart policy); json-file log",
    "container work": " | ".join(CONTAINER_STORY),
    "container network": f"IP {CONTAINER_IP}, gateway {GATEWAY} (docker0 of 1.8), "
    "NetworkID/EndpointID chosen",
    "Pid": str(CONTAINER_PID),
    "HasBeenStartedBefore": "false: 1.8 sets it only in Container.Run (builder), not on API start",
    "resolv.conf": "nameserver 114.114.114.114 under a NetworkManager header",
    "BaseDeviceUUID": f"{BASE_UUID}: the base ext4's UUID (mkfs.ext4 -U), which 1.8 records",
    "deviceset-metadata next_device_id": "1: 1.8 saves this file when it stores the base UUID and "
    "at shutdown; the daemon has not been stopped since the first start",
    "filesystems": "ext4 by mkfs.ext4 -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 + "
    "tune2fs -c -1 -i 0 (Docker 1.8's createFilesystem) under CentOS 7's mke2fs.conf (no "
    f"metadata_csum, no 64bit, uninit_bg), a {JOURNAL_MB} MiB journal as e2fsprogs 1.42 sized it, "
    f"UUID {BASE_UUID}, hash seed {HASH_SEED}, e2fsprogs' fake time {T_START}; every later "
    "device is a copy of its origin changed by debugfs -w, then e2fsck -fn clean",
    "inode times": "the kernel's: ctime (and a new inode's atime and crtime) when Docker wrote "
    "it, nanoseconds included; mtime from the tar header (whole seconds), atime left as it "
    "was (Docker 1.8 passes UTIME_OMIT for a ustar header's zero access time); a directory in "
    "the tar gets its header mtime back at the end; rootfs/ keeps the kernel's mtime",
    "superblocks": "each mount counted (mnt_count), its time as last mount time, the mount point "
    "as last mounted on, the unmount as last write time; the base device was never mounted",
    "mounted container": "the container is running in the records, but its device is shown "
    "cleanly unmounted (no needs_recovery, an idle journal): debugfs does not write a journal",
    "debugfs differences": "debugfs rewrites the backup superblocks and group descriptors (the "
    "kernel does not), leaves the journal idle, keeps a deleted file's extents (the kernel "
    "clears them) and stores all-zero 4 KiB blocks of a file as holes",
    "pool layout": "device 1 maps every 64 KiB block mkfs.ext4 and tune2fs wrote (strace of "
    "their pwrite64 and fallocate calls: zeroed inode tables and journal included, as on a thin "
    "device); each snapshot shares its origin's mappings and maps a new data block for every "
    "64 KiB block its image changed; data blocks handed out in write order; pool time +1 per "
    "snapshot; blocks of zeros are holes in the data file",
    "pool superblock version": f"{POOL_VERSION} (thin-provisioning-tools' default)",
    "mount points": "devicemapper/mnt/<id>/ for every device Docker mounted (ten layers during "
    "the pull, <cid>-init, <cid>), all empty: nothing is mounted in an offline copy",
    "linkgraph.db": "page size 1024 (SQLite 3.8 default of 2015); written by the local SQLite",
    "file modes and mtimes": "as Docker 1.8 creates them under umask 022; mtimes from the timeline",
}


def _member_record(m: dm.Member) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "name": m.name,
        "typeflag": m.typeflag.decode("latin-1"),
        "mode": f"{m.mode:o}",
        "uid": m.uid,
        "gid": m.gid,
        "size": m.size,
        "mtime": m.mtime,
    }
    if m.linkname:
        rec["linkname"] = m.linkname
    if m.typeflag in (b"3", b"4"):
        rec["devmajor"], rec["devminor"] = m.devmajor, m.devminor
    if m.xattrs:
        rec["xattrs"] = {k: v.hex() for k, v in sorted(m.xattrs.items())}
    if m.size:
        rec["sha256"] = dm.sha256hex(m.data)
    return rec


def _outside_rootfs(tree: dm.Tree) -> dict[str, Any]:
    """The driver's own files of a device: its root, ``id``, ``lost+found``, ``rootfs`` itself."""
    return {p: dm.record(tree, p) for p in sorted(tree.paths) if not p.startswith("rootfs/")}


def truth(built: dict[str, Any]) -> dict[str, Any]:
    stages: list[Stage] = built["stages"]
    pool: dm.Pool = built["pool"]
    by_name = {st.name: st for st in stages}
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
            "files": [m.name for m in la.members if m.typeflag in (b"0", b"7")],
            "tar_members": [_member_record(m) for m in la.members],
            "rootfs": dm.listing(by_name[la.id].tree, "rootfs"),
        }
        for la in LAYERS
    ]
    init, ctr = by_name[f"{CID}-init"], by_name[CID]
    top_rootfs = dm.subtree(by_name[LAYERS[-1].id].tree, "rootfs")
    init_rootfs = dm.subtree(init.tree, "rootfs")
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
                "diff": dm.diff_lines(
                    dm.naive_changes(init_rootfs, dm.subtree(ctr.tree, "rootfs"))
                ),
                "init_changes": dm.diff_lines(dm.naive_changes(top_rootfs, init_rootfs)),
                "story": CONTAINER_STORY,
                "rootfs": dm.listing(ctr.tree, "rootfs"),
                "init_rootfs": dm.listing(init.tree, "rootfs"),
            }
        ],
        "devices": {
            dev.file_name: _device_truth(dev, by_name[dev.file_name], pool) for dev in pool.devices
        },
        "filesystem": {
            "type": "ext4",
            "uuid": BASE_UUID,
            "hash_seed": HASH_SEED,
            "mke2fs_conf": MKE2FS_CONF,
            "journal_mb": JOURNAL_MB,
            "mkfs_time": T_START,
        },
        "transaction_metadata": built["transaction"],
        "deviceset_metadata": built["deviceset"],
        "pool": {
            "transaction_id": pool.devices[-1].transaction_id,
            "time": pool.time,
            "data_block_size": DATA_BLOCK_SIZE,
            "nr_data_blocks": NR_DATA_BLOCKS,
            "data_blocks_used": pool.next_data,
            "data_blocks_written": built["pool_result"]["data_blocks_written"],
            "data_file_size": DATA_FILE_SIZE,
            "metadata_file_size": METADATA_FILE_SIZE,
            "version": POOL_VERSION,
            "thin_check": {
                "rc": built["pool_result"]["thin_check_rc"],
                "stderr": built["pool_result"]["thin_check_stderr"],
            },
            "thin_dump_device_ids": built["pool_result"]["thin_dump_device_ids"],
            "superblock": built["pool_result"]["superblock"],
        },
        "chosen": CHOSEN,
        "chosen_ids": chosen_ids(),
    }


def _device_truth(dev: dm.Device, st: Stage, pool: dm.Pool) -> dict[str, Any]:
    return {
        "device_id": dev.device_id,
        "size": DEVICE_SIZE,
        "transaction_id": dev.transaction_id,
        "initialized": dev.initialized,
        "origin_device_id": dev.origin or None,
        "pool_transaction_id": dev.transaction_id - 1,
        "mapped_blocks": len(dev.mappings),
        "creation_time": dev.creation_time,
        "snap_time": dev.snap_time,
        "mappings": pool.runs(dev),
        "superblock": {
            "mount_count": st.mount_count,
            "last_mount_time": st.mount_ns // dm.NS if st.mount_ns else None,
            "last_write_time": st.done_ns // dm.NS,
            "last_mounted": st.last_mounted or None,
        },
        "outside_rootfs": _outside_rootfs(st.tree),
        "deleted_inodes": st.deleted,
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
        "hash_seed": HASH_SEED,
    }


def main(argv: list[str]) -> int:
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__)
        return 0 if len(argv) == 2 else 16
    here = Path(__file__).resolve().parent
    outdir = Path(argv[1]) if len(argv) == 2 else here
    outdir.mkdir(parents=True, exist_ok=True)
    for name, package in (
        ("thin_restore", "thin-provisioning-tools"),
        ("thin_check", "thin-provisioning-tools"),
        ("thin_dump", "thin-provisioning-tools"),
        ("mkfs.ext4", "e2fsprogs"),
        ("debugfs", "e2fsprogs"),
        ("strace", "strace"),
    ):
        dm.tool(name, package)
    assign_ids()
    tmp = Path(tempfile.mkdtemp(prefix="dfx-legacy-dm."))
    try:
        top, work = tmp / "top", tmp / "work"
        top.mkdir()
        work.mkdir()
        built = build_tree(top, work)
        tarball = outdir / f"{NAME}.tar.gz"
        dm.pack(top, tarball, root_owned=True)
        (outdir / f"{NAME}.truth.json").write_text(
            json.dumps(truth(built), sort_keys=True, indent=1, ensure_ascii=False) + "\n"
        )
        print(f"{tarball} ({tarball.stat().st_size} bytes)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
