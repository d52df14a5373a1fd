#!/usr/bin/env python3
"""Build the containerd-store sample: a Docker 29 root whose images and layers live in containerd.

Made by the real programs wherever they run here (needs root, Debian 12's docker.io, containerd,
runc and busybox-static, and ``pip install grpcio``):

1. A private dockerd 20.10 (``tests/dockerd_util.py``) imports a busybox rootfs, builds
   ``sample/app:1.0`` and ``sample/tiny:1.0`` (``FROM scratch``) with the classic builder,
   ``docker save``s them, creates a named volume and the three containers whose Docker files
   the sample keeps, and is stopped by its pid (its ``containers/``, ``volumes/`` and
   ``network/`` are copied while it runs, so the running container's ``config.v2.json`` says
   Running as a crash leaves it).
2. A private containerd 1.6 (own root ``<tmp>/docker/containerd/daemon`` — where dockerd 29
   keeps its own containerd's root —, own state dir and socket; the CRI plugin disabled; the
   garbage collector with containerd's defaults) imports the images: in namespace ``moby``
   with ``--compress-blobs`` (gzip layers carrying ``containerd.io/uncompressed``, as a pull
   leaves them), in ``k8s.io`` as saved (uncompressed Docker layers), plus an OCI conversion
   (``ctr images convert --oci``) and an index kept as an image (``--index-name``).
3. In ``moby`` the three Docker containers get what dockerd 29 makes for them, through
   containerd's API as dockerd calls it (``ctrpb.py``): a lease named after the container
   holding ``<id>-init`` (committed, with the files dockerd's init layer has) and ``<id>``
   (active); the running one and the exited one get a containerd container (snapshot key = id,
   the bundle-path label, no image) and a runc task; the exited one's task and container record
   are deleted after it exits, as dockerd does. In ``k8s.io`` ``ctr run`` starts a container
   and ``ctr containers create`` makes one that never ran; a container record without a
   snapshot is created through the API. Leases: one holding a blob that nothing else holds,
   one flat (``containerd.io/gc.flat``) holding a manifest, one that expires at once. An upload
   is interrupted (``ctr content ingest`` killed half-way): an ingest is left behind.
4. What ``ctr`` lists is recorded (the truth), then containerd is killed with SIGKILL while two
   tasks run; shims and container processes are killed and their mounts removed.
5. The files dockerd 29 keeps under ``/var/lib/docker`` are written (``containers/``,
   ``volumes/``, ``network/``, ``engine-id``, ``rootfs/overlayfs/<id>``), from the real dockerd
   20.10 files reshaped after moby 29's code; each choice is in the truth's ``docker.choices``.
6. The garbage variant: on a copy, containerd runs with its collector disabled
   (its first run a year away, no count that triggers one sooner), ``ctr -n moby images rm``
   removes ``sample/app:1.0`` and ``ctr -n k8s.io containers delete --keep-snapshot`` a
   container record; the files that changed (``meta.db`` only) are kept as
   ``containerd-store-garbage.tar.xz``. On another copy of that, containerd runs with its
   default collector, which collects at start-up; what it removed is recorded.

Usage: python3 samples/make-containerd-sample.py [OUTDIR]
Writes OUTDIR/containerd-store.tar.xz (one top folder ``docker/``), its .truth.json, and
containerd-store-garbage.tar.xz (the files of the garbage variant, also under ``docker/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from ctrpb import Containerd  # noqa: E402

NAME = "containerd-store"
SNAPSHOTTER = "overlayfs"
RUNTIME = "io.containerd.runc.v2"
BUNDLE_LABEL = "com.docker/engine.bundle.path"
#: dockerd 29's default exec root; its bundle dirs are <exec-root>/containerd/<id>
DOCKER_EXEC_ROOT = "/var/run/docker"
DOCKER_ROOT = "/var/lib/docker"
IMPORT_MTIME = 1735689600  # 2025-01-01T00:00:00Z: the mtime of every member of the base tar
CONTAINER_NAMES = ("running", "exited", "created")
#: what moby's setupInitLayer (daemon/initlayer) puts into every <id>-init snapshot
INIT_DIRS = ("dev/pts", "dev/shm", "proc", "sys", "etc")
INIT_FILES = (".dockerenv", "etc/resolv.conf", "etc/hosts", "etc/hostname", "dev/console")
INIT_SYMLINKS = {"etc/mtab": "/proc/mounts"}

CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""
  level = "debug"
"""

#: the collector paused: its first run a year away, and no deletion or mutation count that
#: triggers one sooner (the scheduler plugin cannot be disabled: the images service needs it)
PAUSED_COLLECTOR = """
[plugins."io.containerd.gc.v1.scheduler"]
  startup_delay = "8760h"
  deletion_threshold = 0
  mutation_threshold = 100000000
"""

BASE_DOCKERFILE = """FROM sample/busybox:base
ENV GREETING=hello
# a file in a nested directory, a deleted file (whiteout), a replaced directory (opaque)
RUN mkdir -p /data/nested && echo "nested file" > /data/nested/file.txt && rm /etc/motd \\
 && rm -rf /opt/olddir && mkdir /opt/olddir && echo new > /opt/olddir/new.txt
# a hardlink, a relative symlink, an owner and a setuid mode
RUN echo "linked content" > /data/original.txt && ln /data/original.txt /data/hardlink.txt \\
 && ln -s nested/file.txt /data/link.txt \\
 && echo owned > /data/owned && chown 1234:5678 /data/owned && chmod 4750 /data/owned
COPY hello.txt /app/hello.txt
WORKDIR /app
CMD ["sh"]
"""
TINY_DOCKERFILE = """FROM scratch
COPY hello.txt /hello.txt
COPY note.txt /etc/note.txt
"""
EXITED_SCRIPT = (
    'echo "written by exited" > /data/exited-wrote.txt && mkdir /data/exited-dir '
    "&& rm /data/original.txt /app/hello.txt"
)


def log(msg: str) -> None:
    print(f"[make-containerd-sample] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


# --- step 1: images and Docker's own files from a real dockerd ---------------------------------


def base_tar(busybox: Path) -> bytes:
    """The busybox rootfs imported as ``sample/busybox:base``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:

        def add(name: str, data: bytes = b"", **fields: Any) -> None:
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.mode, ti.uid, ti.gid = IMPORT_MTIME, 0o644, 0, 0
            for key, value in fields.items():
                setattr(ti, key, value)
            if ti.type == tarfile.REGTYPE:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if ti.size else None)

        def d(name: str, mode: int = 0o755) -> None:
            add(name + "/", type=tarfile.DIRTYPE, mode=mode)

        d("bin")
        add("bin/busybox", busybox.read_bytes(), mode=0o755)
        for applet in ("cat", "echo", "ln", "ls", "mkdir", "rm", "sh", "sleep", "touch"):
            add(f"bin/{applet}", type=tarfile.SYMTYPE, linkname="busybox", mode=0o777)
        d("etc")
        add("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        add("etc/motd", b"base motd: deleted by a later layer (whiteout)\n")
        add("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
        d("opt")
        d("opt/olddir")
        add("opt/olddir/a.txt", b"a\n")
        add("opt/olddir/b.txt", b"b\n")
        d("root", 0o700)
        d("tmp", 0o1777)
    return buf.getvalue()


def build_with_dockerd(work: Path) -> dict[str, Any]:
    """Step 1: images saved to ``work/images.tar`` and ``work/tiny.tar``; Docker's containers,
    volumes and network files copied to ``work/dockerd-files``. Returns dockerd's view."""
    from dockerd_util import dockerd_available, private_dockerd

    if not dockerd_available():
        sys.exit("needs root, Debian's docker.io and no system containerd")
    busybox = Path(os.environ.get("BUSYBOX", "/bin/busybox"))
    ctx, tiny = work / "ctx", work / "ctx-tiny"
    ctx.mkdir()
    tiny.mkdir()
    (ctx / "Dockerfile").write_text(BASE_DOCKERFILE)
    (ctx / "hello.txt").write_text("hello from the build context\n")
    (tiny / "Dockerfile").write_text(TINY_DOCKERFILE)
    (tiny / "hello.txt").write_text("hello from a tiny image\n")
    (tiny / "note.txt").write_text("a second layer\n")
    (work / "base.tar").write_bytes(base_tar(busybox))
    files = work / "dockerd-files"
    with private_dockerd(work / "build" / "docker", work / "build") as d:
        d.docker(
            "import", "-c", "ENV PATH=/bin", "-c", 'CMD ["/bin/sh"]', "-m", "busybox-static rootfs",
            str(work / "base.tar"), "sample/busybox:base", check=True,
        )  # fmt: skip
        os.environ["DOCKER_BUILDKIT"] = "0"
        d.docker("build", "-q", "-t", "sample/app:1.0", str(ctx), check=True)
        d.docker("build", "-q", "-t", "sample/tiny:1.0", str(tiny), check=True)
        d.docker("save", "-o", str(work / "images.tar"), "sample/busybox:base", "sample/app:1.0",
                 check=True)  # fmt: skip
        d.docker("save", "-o", str(work / "tiny.tar"), "sample/tiny:1.0", check=True)
        d.docker("volume", "create", "--label", f"org.example.sample={NAME}", "sample-data",
                 check=True)  # fmt: skip
        net = ("--network", "none")
        d.docker("run", *net, "--name", "exited", "-v", "sample-data:/vol", "sample/app:1.0",
                 "sh", "-c", EXITED_SCRIPT + " && echo payload > /vol/payload.txt")  # fmt: skip
        d.docker("create", *net, "--name", "created", "sample/app:1.0", "echo", "never-started",
                 check=True)  # fmt: skip
        d.docker("run", "-d", *net, "--name", "running", "sample/app:1.0", "sleep", "100000",
                 check=True)  # fmt: skip
        view = {
            "docker_version": d.docker("version", "--format", "{{.Server.Version}}").stdout.strip(),
            "inspect": json.loads(d.docker("inspect", *CONTAINER_NAMES, check=True).stdout),
            "volumes": json.loads(d.docker("volume", "inspect", "sample-data", check=True).stdout),
        }
        files.mkdir()
        for part in ("containers", "volumes", "network"):
            run(["cp", "-a", str(d.data_root / part), str(files / part)])
        view["data_root"] = str(d.data_root)
    return view


# --- step 2-4: a private containerd -------------------------------------------------------------


class PrivateContainerd:
    """containerd with a private config, root, state dir and socket; stopped by its pid."""

    def __init__(self, work: Path, root: Path, name: str, *, collector: bool = True) -> None:
        self.root = root
        self.state = work / f"state-{name}"
        self.sock = str(work / f"{name}.sock")
        self.config = work / f"containerd-{name}.toml"
        self.log_path = work / f"containerd-{name}.log"
        text = CONFIG.format(root=root, state=self.state, sock=self.sock,
                             disabled='"io.containerd.grpc.v1.cri"')  # fmt: skip
        self.config.write_text(text if collector else text + PAUSED_COLLECTOR)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                ["containerd", "--config", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        for _ in range(100):
            if self.proc.poll() is not None:
                sys.exit(f"containerd exited: {self.log_path.read_text()[-2000:]}")
            if subprocess.run(self.ctr_cmd("version"), capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        sys.exit("containerd did not answer")

    def ctr_cmd(self, *args: str, ns: str | None = None) -> list[str]:
        return ["ctr", "-a", self.sock, *(["-n", ns] if ns else []), *args]

    def ctr(self, *args: str, ns: str | None = None, **kw: Any) -> str:
        return run(self.ctr_cmd(*args, ns=ns), **kw).stdout

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill_leftovers(self) -> None:
        """Kill the shims and container processes of this containerd (found through its state
        dir and socket path, never by name), remove their cgroups, shim sockets and mounts."""
        tasks = self.state / "io.containerd.runtime.v2.task"
        bundles = sorted(tasks.glob("*/*")) if tasks.is_dir() else []
        for bundle in bundles:
            with contextlib.suppress(OSError, ValueError):
                pid = int((bundle / "init.pid").read_text().strip())
                if bundle.name in Path(f"/proc/{pid}/cgroup").read_text():
                    os.kill(pid, signal.SIGKILL)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                with contextlib.suppress(OSError):
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    if self.sock in cmd or str(self.state) in cmd:
                        os.kill(int(entry.name), signal.SIGKILL)
        time.sleep(1)
        for bundle in bundles:
            ns, cid = bundle.parent.name, bundle.name
            for d in Path("/sys/fs/cgroup").glob(f"**/{ns}/{cid}"):
                with contextlib.suppress(OSError):
                    d.rmdir()
            digest = hashlib.sha256(f"{self.sock}/{ns}/{cid}".encode()).hexdigest()
            with contextlib.suppress(OSError):
                Path("/run/containerd/s", digest).unlink()
            # runc's state of the task (the shim's default runc root)
            shutil.rmtree(Path("/run/containerd/runc", ns, cid), ignore_errors=True)
        from dockerd_util import unmount_under

        left = unmount_under(self.state, self.root)
        if left:
            sys.exit(f"mounts left: {left}")


def compose(work: Path, docker: Path, view: dict[str, Any]) -> dict[str, Any]:
    """Steps 2-4 on ``docker/containerd/daemon``; returns the truth of what ctr listed."""
    c = PrivateContainerd(work, docker / "containerd" / "daemon", "main")
    c.start()
    api = Containerd(c.sock)
    notes: list[str] = []
    try:
        import_images(c, work)
        ids = {ctr["Name"].lstrip("/"): ctr["Id"] for ctr in view["inspect"]}
        app = "docker.io/sample/app:1.0"
        chain = top_chain_id(c, "moby", app)
        pids = docker29_containers(c, api, ids, chain)
        k8s_containers(c, api)
        leases(c, api)
        interrupted_ingest(c)
        time.sleep(1.5)  # the lease that expires at once has expired
        truth = listing(c, api)
        truth["tasks_at_crash"] = pids
        truth["snapshot_dirs"] = snapshot_dirs(c)
        log("killing containerd with SIGKILL while tasks run")
        c.stop(signal.SIGKILL)
    finally:
        api.close()
        c.stop(signal.SIGKILL)
        c.kill_leftovers()
    truth["notes"] = notes
    truth["config"] = c.config.read_text().replace(str(work), "<tmp>")
    return truth


def import_images(c: PrivateContainerd, work: Path) -> None:
    images, tiny = str(work / "images.tar"), str(work / "tiny.tar")
    c.ctr("images", "import", "--compress-blobs", images, ns="moby")
    c.ctr("images", "import", "--compress-blobs", tiny, ns="moby")
    c.ctr("images", "import", "--index-name", "docker.io/sample/index:all", images, ns="k8s.io")
    c.ctr("images", "import", tiny, ns="k8s.io")
    c.ctr("images", "convert", "--oci", "docker.io/sample/tiny:1.0", "docker.io/sample/tiny:oci",
          ns="k8s.io")  # fmt: skip
    # a dangling image as dockerd 29 names one (moby soft_delete.go): moby-dangling@<digest>
    target = image_targets(c, "moby")["docker.io/sample/tiny:1.0"]
    c.ctr("images", "tag", "docker.io/sample/tiny:1.0", f"moby-dangling@{target}", ns="moby")
    c.ctr("images", "rm", "docker.io/sample/tiny:1.0", ns="moby")


def image_targets(c: PrivateContainerd, ns: str) -> dict[str, str]:
    return {row["name"]: row["digest"] for row in images_ls(c, ns)}


def top_chain_id(c: PrivateContainerd, ns: str, image: str) -> str:
    """The ChainID of the image's top layer: the committed snapshot key its unpack made."""
    keys = {r["key"] for r in snapshots_ls(c, ns)}
    config = json.loads(fetch_config(c, ns, image))
    chain = ""
    for diff in config["rootfs"]["diff_ids"]:
        step = f"{chain} {diff}".encode()
        chain = "sha256:" + hashlib.sha256(step).hexdigest() if chain else diff
    if chain not in keys:
        sys.exit(f"{image}: no snapshot {chain} in {sorted(keys)}")
    return chain


def fetch_config(c: PrivateContainerd, ns: str, image: str) -> str:
    manifest = json.loads(c.ctr("content", "get", image_targets(c, ns)[image], ns=ns))
    return c.ctr("content", "get", manifest["config"]["digest"], ns=ns)


def docker29_containers(
    c: PrivateContainerd, api: Containerd, ids: dict[str, str], chain: str
) -> dict[str, int]:
    """What dockerd 29 makes in containerd for ``running``, ``exited`` and ``created``."""
    pids: dict[str, int] = {}
    for name in ("created", "exited", "running"):
        cid = ids[name]
        api.lease_create("moby", cid)
        options = api.prepare("moby", SNAPSHOTTER, f"{cid}-init-key", chain, cid)
        write_init_layer(upperdir(options))
        api.commit("moby", SNAPSHOTTER, f"{cid}-init", f"{cid}-init-key", cid)
        api.prepare("moby", SNAPSHOTTER, cid, f"{cid}-init", cid)
        if name == "created":
            continue
        args = ["sh", "-c", EXITED_SCRIPT] if name == "exited" else ["sleep", "100000"]
        spec = oci_spec(c, args, cid, "moby")
        labels = {BUNDLE_LABEL: f"{DOCKER_EXEC_ROOT}/containerd/{cid}"}
        api.container_create("moby", cid, labels=labels, runtime=RUNTIME, spec=spec,
                             snapshotter=SNAPSHOTTER, snapshot_key=cid)  # fmt: skip
        if name == "exited":
            c.ctr("tasks", "start", "--null-io", cid, ns="moby")  # deletes the task at exit
            c.ctr("containers", "delete", "--keep-snapshot", cid, ns="moby")
        else:
            c.ctr("tasks", "start", "--null-io", "-d", cid, ns="moby")
            pids[cid] = task_pid(c, "moby", cid)
    return pids


def upperdir(options: list[str]) -> Path:
    for option in options:
        if option.startswith("upperdir="):
            return Path(option.removeprefix("upperdir="))
    sys.exit(f"no upperdir in {options}")


def write_init_layer(upper: Path) -> None:
    """What moby's setupInitLayer writes into a container's init layer."""
    for d in INIT_DIRS:
        (upper / d).mkdir(parents=True, exist_ok=True)
    for f in INIT_FILES:
        (upper / f).touch(0o755)
    for link, target in INIT_SYMLINKS.items():
        os.symlink(target, upper / link)


def oci_spec(c: PrivateContainerd, args: list[str], cid: str, ns: str) -> bytes:
    """containerd's default spec (``ctr oci spec``) with the process, hostname and the cgroup
    path set; dockerd's own spec has more (recorded as a choice)."""
    spec = json.loads(c.ctr("oci", "spec"))
    spec["process"]["args"] = args
    spec["process"]["env"] = ["PATH=/bin", "GREETING=hello"]
    spec["process"]["cwd"] = "/app"
    spec["hostname"] = cid[:12]
    spec["linux"]["cgroupsPath"] = f"/{ns}/{cid}"
    return json.dumps(spec).encode()


def task_pid(c: PrivateContainerd, ns: str, cid: str) -> int:
    for line in c.ctr("tasks", "ls", ns=ns).splitlines()[1:]:
        parts = line.split()
        if parts and parts[0] == cid:
            return int(parts[1])
    sys.exit(f"no task {cid}")


def k8s_containers(c: PrivateContainerd, api: Containerd) -> None:
    ns = "k8s.io"
    c.ctr("run", "-d", "--null-io", "--snapshotter", SNAPSHOTTER,
          "--label", "io.kubernetes.pod.name=sample-pod",
          "--label", "io.kubernetes.pod.namespace=default",
          "docker.io/sample/app:1.0", "k8s-app-running", "sleep", "100000", ns=ns)  # fmt: skip
    c.ctr("containers", "create", "--snapshotter", SNAPSHOTTER, "--label", "tier=never-started",
          "docker.io/sample/tiny:oci", "k8s-tiny-created", "/hello.txt", ns=ns)  # fmt: skip
    spec = oci_spec(c, ["true"], "k8s-no-snapshot", ns)
    api.container_create(ns, "k8s-no-snapshot", labels={"note": "no snapshot key"},
                         runtime=RUNTIME, spec=spec, image="docker.io/sample/tiny:1.0")  # fmt: skip


def leases(c: PrivateContainerd, api: Containerd) -> None:
    """A lease holding a blob nothing else holds, a flat lease holding a manifest, and a lease
    that expires at once; the blob is ingested with ``ctr content ingest``."""
    blob = b"a blob that only a lease holds\n" * 4
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    api.lease_create("moby", "hold-blob", {"purpose": "holds-a-blob"})
    run(c.ctr_cmd("content", "ingest", "--expected-size", str(len(blob)), "--expected-digest",
                  digest, "hold-blob-upload", ns="moby"), input=blob.decode())  # fmt: skip
    api.lease_add("moby", "hold-blob", digest, "content")
    manifest = image_targets(c, "k8s.io")["docker.io/sample/tiny:1.0"]
    api.lease_create("k8s.io", "flat-manifest", {"containerd.io/gc.flat": "2025-01-01T00:00:00Z"})
    api.lease_add("k8s.io", "flat-manifest", manifest, "content")
    c.ctr("leases", "create", "--id", "expires-at-once", "-x", "1s", ns="moby")


def interrupted_ingest(c: PrivateContainerd) -> None:
    """``ctr content ingest`` killed after half of its input: an upload left behind."""
    data = b"an upload that never finished\n" * 2000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    proc = subprocess.Popen(
        c.ctr_cmd("content", "ingest", "--expected-size", str(len(data)), "--expected-digest",
                  digest, "interrupted-upload", ns="moby"),
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(data[: len(data) // 2])
    proc.stdin.flush()
    for _ in range(50):
        if "interrupted-upload" in c.ctr("content", "active", ns="moby"):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    proc.kill()
    proc.wait()


# --- what ctr lists ----------------------------------------------------------------------------


def images_ls(c: PrivateContainerd, ns: str) -> list[dict[str, Any]]:
    rows = []
    for line in c.ctr("images", "ls", ns=ns).splitlines()[1:]:
        p = line.split()
        rows.append({"name": p[0], "media_type": p[1], "digest": p[2], "platforms": p[5],
                     "labels": parse_labels(p[6])})  # fmt: skip
    return rows


def snapshots_ls(c: PrivateContainerd, ns: str) -> list[dict[str, Any]]:
    rows = []
    for line in c.ctr("snapshots", "--snapshotter", SNAPSHOTTER, "ls", ns=ns).splitlines()[1:]:
        p = line.split()
        key, parent, kind = (p[0], "", p[1]) if len(p) == 2 else (p[0], p[1], p[2])
        rows.append({"key": key, "parent": parent, "kind": kind})
    return rows


def parse_labels(text: str) -> dict[str, str]:
    if text in ("", "-"):
        return {}
    return dict(item.split("=", 1) for item in text.split(","))


def listing(c: PrivateContainerd, api: Containerd) -> dict[str, Any]:
    """Everything ctr lists, per namespace."""
    out: dict[str, Any] = {"namespaces": {}}
    for ns in c.ctr("namespaces", "ls", "-q").split():
        out["namespaces"][ns] = namespace_listing(c, api, ns)
    return out


def namespace_listing(c: PrivateContainerd, api: Containerd, ns: str) -> dict[str, Any]:
    containers = []
    for cid in c.ctr("containers", "ls", "-q", ns=ns).split():
        info = json.loads(c.ctr("containers", "info", cid, ns=ns))
        info["Spec"] = {"type_url": "see the spec blob", "args": info["Spec"]["process"]["args"]}
        containers.append(info)
    snapshots = []
    for row in snapshots_ls(c, ns):
        info = json.loads(c.ctr("snapshots", "--snapshotter", SNAPSHOTTER, "info", row["key"],
                                ns=ns))  # fmt: skip
        snapshots.append({**row, "info": info})
    content = []
    for line in c.ctr("content", "ls", ns=ns).splitlines()[1:]:
        p = line.split()
        content.append({"digest": p[0], "labels": parse_labels(p[-1])})
    leases_ = []
    for line in c.ctr("leases", "ls", ns=ns).splitlines()[1:]:
        p = line.split()
        leases_.append({"id": p[0], "created": p[1], "labels": parse_labels(p[2]),
                        "resources": api.lease_resources(ns, p[0])})  # fmt: skip
    ingests = [line.split()[0] for line in c.ctr("content", "active", ns=ns).splitlines()[1:]]
    tasks = [line.split() for line in c.ctr("tasks", "ls", ns=ns).splitlines()[1:]]
    return {
        "images": images_ls(c, ns),
        "containers": containers,
        "snapshots": snapshots,
        "content": content,
        "leases": leases_,
        "ingests": ingests,
        "tasks": [{"id": t[0], "pid": int(t[1]), "status": t[2]} for t in tasks],
    }


def snapshot_dirs(c: PrivateContainerd) -> dict[str, Any]:
    """The overlayfs snapshotter's directories and, from the mounts of every active snapshot,
    which key lives in which directory."""
    base = c.root / f"io.containerd.snapshotter.v1.{SNAPSHOTTER}" / "snapshots"
    ids: dict[str, dict[str, str]] = {}
    for ns in c.ctr("namespaces", "ls", "-q").split():
        for row in snapshots_ls(c, ns):
            if row["kind"] != "Active":
                continue
            out = c.ctr("snapshots", "--snapshotter", SNAPSHOTTER, "mounts", "/mnt", row["key"],
                        ns=ns)  # fmt: skip
            m = re.search(r"upperdir=[^,\s]*/snapshots/(\d+)/fs", out)
            if m:
                ids.setdefault(ns, {})[row["key"]] = m.group(1)
    return {"dirs": sorted(os.listdir(base), key=int), "active_ids": ids}


def files_of(root: Path) -> dict[str, str]:
    """sha256 of every regular file below ``root`` (relative paths)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def existing_paths(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --- step 5: the files dockerd 29 keeps --------------------------------------------------------


def docker_files(work: Path, docker: Path, view: dict[str, Any], truth: dict[str, Any]) -> dict:
    """Docker 29's files under ``docker/``, from dockerd 20.10's real ones, reshaped."""
    src = work / "dockerd-files"
    old_root = view["data_root"]
    moby = truth["namespaces"]["moby"]
    targets = {row["name"]: row for row in moby["images"]}
    app = targets["docker.io/sample/app:1.0"]
    manifest = {"mediaType": app["media_type"], "digest": app["digest"],
                "size": blob_size(docker, app["digest"])}  # fmt: skip
    containers = []
    (docker / "containers").mkdir()
    for inspect in view["inspect"]:
        cid, name = inspect["Id"], inspect["Name"].lstrip("/")
        run(["cp", "-a", str(src / "containers" / cid), str(docker / "containers" / cid)])
        cfg_path = docker / "containers" / cid / "config.v2.json"
        cfg = json.loads(cfg_path.read_text().replace(old_root, DOCKER_ROOT))
        cfg["Driver"] = SNAPSHOTTER
        cfg["Image"] = app["digest"]
        cfg["ImageManifest"] = manifest
        if name == "running":
            (pid,) = [p for c, p in truth["tasks_at_crash"].items() if c == cid]
            cfg["State"]["Pid"] = pid
        keep_times(cfg_path, json.dumps(cfg, separators=(",", ":")).encode())
        hostconfig = docker / "containers" / cid / "hostconfig.json"
        keep_times(
            hostconfig, hostconfig.read_bytes().replace(old_root.encode(), DOCKER_ROOT.encode())
        )
        (docker / "rootfs" / SNAPSHOTTER / cid).mkdir(parents=True, exist_ok=True)
        containers.append({
            "id": cid, "name": name, "state": inspect["State"]["Status"],
            "exit_code": inspect["State"]["ExitCode"], "snapshot_key": cid,
            "init_snapshot": f"{cid}-init", "lease": cid, "image": app["digest"],
            "image_name": app["name"], "image_manifest": manifest,
        })  # fmt: skip
    for part in ("volumes", "network"):
        run(["cp", "-a", str(src / part), str(docker / part)])
    (docker / "engine-id").write_text(
        hashlib.sha256(b"docker-forensics/" + NAME.encode()).hexdigest()[:8] + "-engine\n"
    )
    return {
        "docker_version_of_the_parts": view["docker_version"],
        "containers": containers,
        "volumes": [v["Name"] for v in view["volumes"]],
        "choices": DOCKER_CHOICES,
    }


DOCKER_CHOICES = [
    "No Docker 29 binary runs here: containers/<id>/ (config.v2.json, hostconfig.json, hostname, "
    "hosts, resolv.conf, the json-file log, mounts/) are dockerd 20.10.24's real files for the "
    "containers 'running', 'exited' and 'created', copied while that dockerd ran, then reshaped "
    'after moby docker-v29.7.2: config.v2.json gets "Driver": "overlayfs" (the snapshotter\'s '
    'name, daemon/container.go), "Image": the image\'s target digest (daemon/containerd/image.go: '
    'image.ID(img.Target.Digest)) and "ImageManifest": the manifest descriptor '
    "(daemon/create.go), written compact as dockerd writes it; the running container's "
    "State.Pid is its containerd task's pid. Paths naming dockerd 20.10's temp data root now "
    "name /var/lib/docker. mtimes kept.",
    "The container ids are dockerd 20.10's; in containerd each has what moby's "
    "daemon/containerd/image_snapshot.go makes: a lease named <id> (no labels, no expiry), "
    "snapshot <id>-init-key prepared on the image's top ChainID, the init layer's files written "
    "into it (setupInitLayer: dev/pts, dev/shm, proc, sys, etc dirs; .dockerenv, "
    "etc/resolv.conf, etc/hosts, etc/hostname, dev/console empty files; etc/mtab -> "
    "/proc/mounts), committed as <id>-init, and <id> prepared on <id>-init, all under that "
    "lease.",
    "The running and the exited container get a containerd container record as dockerd 29 "
    "creates one at start (daemon/oci_linux.go, libcontainerd/remote/client.go): snapshotter "
    "overlayfs, snapshot key = id, runtime io.containerd.runc.v2, label "
    "com.docker/engine.bundle.path=/var/run/docker/containerd/<id>, no image; the spec is "
    "containerd's default (ctr oci spec) with the process set, not dockerd's. The exited one ran "
    "(it wrote and deleted files in its snapshot), then its task and container record were "
    "deleted, as dockerd does when a container exits. 'created' never started: no record.",
    "volumes/ (metadata.db, sample-data/_data/payload.txt) and network/files/local-kv.db are "
    "dockerd 20.10.24's real files. image/ is absent (as on 29.0-29.2), no overlay2/, no "
    "buildkit/ (no build ran on the containerd store). rootfs/overlayfs/<id>/ is an empty mount "
    "point per container (daemon/snapshotter/mount.go). engine-id is made up.",
    "Image names: ctr images import names docker.io/sample/app:1.0 etc.; dockerd 29 shows the "
    "same. moby-dangling@<digest> is made with ctr images tag + rm (moby's soft_delete.go name).",
]


def blob_size(docker: Path, digest: str) -> int:
    algo, hexpart = digest.split(":")
    return (
        (docker / "containerd/daemon/io.containerd.content.v1.content/blobs" / algo / hexpart)
        .stat()
        .st_size
    )


def keep_times(path: Path, data: bytes) -> None:
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


# --- step 6: the garbage variant ---------------------------------------------------------------


def garbage_variant(work: Path, docker: Path, outdir: Path) -> dict[str, Any]:
    """Remove an image with the collector paused; then let containerd collect on a copy."""
    paused_root = work / "garbage" / "docker"
    paused_root.parent.mkdir()
    run(["cp", "-a", str(docker), str(paused_root)])
    c = PrivateContainerd(work, paused_root / "containerd" / "daemon", "paused", collector=False)
    c.start()
    api = Containerd(c.sock)
    try:
        removed_image = "docker.io/sample/app:1.0"
        c.ctr("images", "rm", removed_image, ns="moby")
        # a container record deleted, its snapshot kept: nothing references the snapshot
        c.ctr("containers", "delete", "--keep-snapshot", "k8s-tiny-created", ns="k8s.io")
        before = listing(c, api)
        before["snapshot_dirs"] = snapshot_dirs(c)
    finally:
        api.close()
        c.stop()
        c.kill_leftovers()
    before_files = files_of(docker)
    after_files = files_of(paused_root)
    changed = sorted(k for k in after_files if before_files.get(k) != after_files[k])
    gone = sorted(set(before_files) - set(after_files))
    if gone:
        sys.exit(f"the paused containerd removed files: {gone}")
    pack(paused_root.parent, ["docker/" + p for p in changed], outdir / f"{NAME}-garbage.tar.xz",
         recursion=False)  # fmt: skip

    collect_root = work / "collect" / "docker"
    collect_root.parent.mkdir()
    run(["cp", "-a", str(paused_root), str(collect_root)])
    paths_before = existing_paths(collect_root)
    c = PrivateContainerd(work, collect_root / "containerd" / "daemon", "collect")
    collected_at = datetime.now(UTC)
    c.start()
    api = Containerd(c.sock)
    try:
        wait_for_collection(c)
        after = listing(c, api)
        after["snapshot_dirs"] = snapshot_dirs(c)
    finally:
        api.close()
        c.stop()
        c.kill_leftovers()
    paths_gone = sorted(paths_before - existing_paths(collect_root))
    return {
        "how": "a copy of the sample; containerd started with its collector paused "
        f"(config_paused), `ctr -n moby images rm {removed_image}` and `ctr -n k8s.io containers "
        "delete --keep-snapshot k8s-tiny-created`; containerd stopped. The "
        "files that changed are in the garbage archive. Then on a copy of that, containerd with "
        "its default collector (startup_delay 100ms) collected at start-up.",
        "removed_image": {"namespace": "moby", "name": removed_image},
        "removed_container": {"namespace": "k8s.io", "id": "k8s-tiny-created"},
        "changed_files": changed,
        "collected_at": collected_at.isoformat().replace("+00:00", "Z"),
        "before_collection": before,
        "after_collection": after,
        "removed": removed(before, after),
        "paths_removed": topmost(paths_gone),
        "config_paused": PAUSED_COLLECTOR.strip(),
    }


def topmost(paths: list[str]) -> list[str]:
    """The paths whose parent directory is not itself among ``paths``."""
    every = set(paths)
    return [p for p in paths if p.rpartition("/")[0] not in every]


def wait_for_collection(c: PrivateContainerd) -> None:
    """Until containerd's log says its start-up collection ran and both cleanups ended."""
    for _ in range(100):
        text = c.log_path.read_text()
        if "garbage collected" in text and "content garbage collected" in text:
            time.sleep(1)
            return
        time.sleep(0.2)
    log("warning: no collection seen in containerd's log")


def removed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ns, b in before["namespaces"].items():
        a = after["namespaces"].get(ns, {})

        def gone(kind: str, key: str, b: dict = b, a: dict = a) -> list[str]:
            left = {row[key] for row in a.get(kind, [])}
            return sorted(row[key] for row in b[kind] if row[key] not in left)

        out[ns] = {
            "content": gone("content", "digest"),
            "snapshots": gone("snapshots", "key"),
            "leases": gone("leases", "id"),
            "images": gone("images", "name"),
            "containers": gone("containers", "ID"),
            "ingests": sorted(set(b["ingests"]) - set(a.get("ingests", []))),
        }
    out["snapshot_dirs"] = sorted(
        set(before["snapshot_dirs"]["dirs"]) - set(after["snapshot_dirs"]["dirs"]), key=int
    )
    return out


# --- packing -----------------------------------------------------------------------------------


def pack(parent: Path, members: list[str], archive: Path, *, recursion: bool = True) -> None:
    """GNU tar of ``members`` (relative to ``parent``) piped into ``xz -9 -T1``: numeric owners,
    xattrs, sorted names, no atime/ctime, mtimes kept."""
    cmd = ["tar", "-C", str(parent), "--numeric-owner", "--xattrs", "--xattrs-include=*",
           "--sort=name", "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
           "--recursion" if recursion else "--no-recursion", "-cf", "-", *members]  # fmt: skip
    part = archive.with_suffix(".part")
    with open(part, "wb") as out:
        tar = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        subprocess.run(["xz", "-9", "-T1", "-c"], stdin=tar.stdout, stdout=out, check=True)
        if tar.wait() != 0:
            sys.exit("tar failed")
    part.rename(archive)


def main(argv: list[str]) -> int:
    outdir = Path(argv[0]).resolve() if argv else HERE
    if os.geteuid() != 0:
        sys.exit("must run as root")
    if Path("/run/containerd/containerd.sock").exists():
        sys.exit("a system containerd runs here; refusing to run beside it")
    work = Path(tempfile.mkdtemp(prefix="dfx-ctd."))  # short: unix socket paths
    try:
        view = build_with_dockerd(work)
        docker = work / "docker"
        (docker / "containerd" / "daemon").mkdir(parents=True)
        truth = compose(work, docker, view)
        truth["docker"] = docker_files(work, docker, view, truth)
        truth["versions"] = {
            "containerd": run(["containerd", "--version"]).stdout.strip(),
            "runc": run(["runc", "--version"]).stdout.splitlines()[0],
            "dockerd_of_the_parts": view["docker_version"],
        }
        truth["sample"] = NAME
        truth["content_blobs"] = sorted(
            p.name
            for p in (
                docker / "containerd/daemon/io.containerd.content.v1.content/blobs/sha256"
            ).iterdir()
        )
        truth["garbage"] = garbage_variant(work, docker, outdir)
        pack(work, ["docker"], outdir / f"{NAME}.tar.xz")
        text = json.dumps(truth, sort_keys=True, indent=1).replace(str(work), "<tmp>")
        (outdir / f"{NAME}.truth.json").write_text(text + "\n")
        log(f"wrote {outdir}/{NAME}.tar.xz, {NAME}-garbage.tar.xz and {NAME}.truth.json")
    finally:
        from dockerd_util import unmount_under

        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
