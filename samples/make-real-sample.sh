#!/usr/bin/env bash
# make-real-sample.sh — produce a REAL Docker data root for docker-forensics' tests.
#
# A private dockerd (own data root, exec root, socket, pidfile; no bridge, no iptables) builds
# images, runs containers in every state it can, records what the daemon itself reports
# (<name>.truth.json), is then killed with SIGKILL (a crash: the running container's
# config.v2.json still says Running:true), and its data root is packed as <name>.tar.gz or
# <name>.tar.xz (one top folder `docker/`, numeric owners, hardlinks, xattrs and whiteout char
# devices kept, mtimes untouched: they are evidence).
#
# Needs root and, on Debian 12:   apt-get install -y docker.io busybox-static
# Usage:  bash samples/make-real-sample.sh [--driver overlay2|vfs|overlay] [--name NAME]
#                                          [--shape full|small] [--compress gz|xz] [OUTDIR]
#   --driver    dockerd's --storage-driver (default overlay2)
#   --name      sample name (default modern-<driver>; the SAMPLE_NAME environment variable
#               is honoured too)
#   --shape     full: 3 images (classic builder + BuildKit), 7 containers in 6 states;
#               small: base + a 3-layer app image, 4 containers (running, exited, created,
#               with-volume), no BuildKit. Default: full for overlay2, small otherwise.
#   --compress  gz (gzip -9n, <name>.tar.gz) or xz (xz -9 -T1, <name>.tar.xz).
#               Default: xz for vfs (its full rootfs copy per layer dedups well in xz's
#               64 MiB dictionary), gz otherwise.
#   OUTDIR      default: samples/
#   The three committed samples:  (no options)          -> modern-overlay2.tar.gz
#                                 --driver vfs           -> modern-vfs.tar.xz
#                                 --driver overlay       -> modern-overlay.tar.gz
# Environment (optional):         SAMPLE_NAME, DOCKERD (dockerd),
#                                 DOCKER_CLI (/usr/bin/docker: Debian's 20.10 client; a newer
#                                 client elsewhere in PATH may refuse the 20.10 API), BUSYBOX
#
# Never touches a system daemon: no default socket, no /var/lib/docker, no /etc/docker; every
# process it kills is found through its own temp dir (pidfile, containerd task bundles, command
# lines naming the temp dir). The temp dir is removed on every exit path (trap).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DOCKERD=${DOCKERD:-dockerd}
DOCKER_CLI=${DOCKER_CLI:-/usr/bin/docker}
BUSYBOX=${BUSYBOX:-/bin/busybox}

log() { printf '[make-real-sample] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '/^# Usage:/,/^#   OUTDIR/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

DRIVER=overlay2 NAME=${SAMPLE_NAME:-} SHAPE= COMPRESS= OUTARG=
while [[ $# -gt 0 ]]; do
  case $1 in
    --driver | --name | --shape | --compress)
      [[ $# -ge 2 ]] || die "$1 needs a value"
      case $1 in
        --driver) DRIVER=$2 ;; --name) NAME=$2 ;; --shape) SHAPE=$2 ;; --compress) COMPRESS=$2 ;;
      esac
      shift 2 ;;
    --driver=*) DRIVER=${1#*=}; shift ;;
    --name=*) NAME=${1#*=}; shift ;;
    --shape=*) SHAPE=${1#*=}; shift ;;
    --compress=*) COMPRESS=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; [[ $# -le 1 ]] || die "one OUTDIR at most"; OUTARG=${1:-$OUTARG}; break ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) [[ -z $OUTARG ]] || die "one OUTDIR at most"; OUTARG=$1; shift ;;
  esac
done
# Drivers dockerd 20.10 offers on this host's ext4 backing fs (btrfs/zfs need their own file
# system, devicemapper a thin pool, aufs a kernel module that is gone).
case $DRIVER in overlay2 | vfs | overlay) ;; *) die "--driver: overlay2, vfs or overlay" ;; esac
NAME=${NAME:-modern-$DRIVER}
[[ $NAME =~ ^[A-Za-z0-9._-]+$ ]] || die "--name: letters, digits, '.', '_', '-' only"
[[ -n $SHAPE ]] || { [[ $DRIVER == overlay2 ]] && SHAPE=full || SHAPE=small; }
case $SHAPE in full | small) ;; *) die "--shape: full or small" ;; esac
[[ -n $COMPRESS ]] || { [[ $DRIVER == vfs ]] && COMPRESS=xz || COMPRESS=gz; }
case $COMPRESS in gz | xz) ;; *) die "--compress: gz or xz" ;; esac
OUTDIR=$(realpath -m "${OUTARG:-$HERE}")
ARCHIVE=$NAME.tar.$COMPRESS

[[ $(id -u) -eq 0 ]] || die "must run as root (dockerd needs it)"
command -v "$DOCKERD" >/dev/null || die "no dockerd: apt-get install -y docker.io"
[[ -x $DOCKER_CLI ]] || die "no docker client at $DOCKER_CLI: apt-get install -y docker.io"
[[ -x $BUSYBOX ]] || die "no $BUSYBOX: apt-get install -y busybox-static"
[[ $COMPRESS != xz ]] || command -v xz >/dev/null || die "no xz: apt-get install -y xz-utils"
file -b "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' || log "warning: $BUSYBOX may not be static"
# dockerd 20.10 silently uses a SYSTEM containerd when /run/containerd/containerd.sock exists,
# instead of starting its own private one under --exec-root. Refuse rather than share it.
[[ ! -S /run/containerd/containerd.sock ]] ||
  die "a system containerd is running (/run/containerd/containerd.sock); dockerd would use it"
mkdir -p "$OUTDIR"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dfx-sample.XXXXXX")   # short: unix socket paths ≤ 107 bytes
ROOT=$WORK/docker          # the data root; packed as the archive's top folder docker/
EXEC=$WORK/exec
SOCK=$WORK/docker.sock
PIDFILE=$WORK/docker.pid
CONF=$WORK/daemon.json
DLOG=$WORK/dockerd.log
DPID=
CIDS=()                    # container ids of THIS daemon (for cgroup clean-up)

# ---------------------------------------------------------------------------------------------
# The private daemon's flags. KEEP IN SYNC with dockerd_command() in tests/dockerd_util.py
# (its storage_driver parameter is --driver here).
#   --config-file: a private daemon.json whose only key, deprecated-key-path, keeps dockerd
#     20.10 from creating /etc/docker/key.json (and from reading a host /etc/docker/daemon.json).
#   --bridge=none …: no docker0, no iptables rules, no sysctl changes on the host.
#   No --containerd: dockerd starts its own containerd under <exec-root>/containerd (state) and
#     <data-root>/containerd/daemon (root); it dies with dockerd (Pdeathsig).
# ---------------------------------------------------------------------------------------------
printf '{"deprecated-key-path": "%s"}\n' "$WORK/key.json" >"$CONF"
DOCKERD_FLAGS=(
  --data-root "$ROOT"
  --exec-root "$EXEC"
  -H "unix://$SOCK"
  --pidfile "$PIDFILE"
  --config-file "$CONF"
  --storage-driver "$DRIVER"
  --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false
  --userland-proxy=false
)

# The client, always against the private socket, with a private client config dir.
d() {
  env -u DOCKER_CONTEXT -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH \
    DOCKER_HOST="unix://$SOCK" DOCKER_CONFIG="$WORK/client" "$DOCKER_CLI" "$@"
}

# --- clean-up helpers (used by the crash step AND by the EXIT trap) -----------------------------

cmdline_of() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" || true; }

# Kill every process that belongs to this daemon, never anything else:
#  1. container init processes, from the containerd task bundles under OUR exec root, each
#     checked to live in a cgroup named after its container id (guards against a recycled pid);
#  2. dockerd, containerd, containerd-shim-runc-v2: their command lines name OUR temp dir.
kill_leftovers() {
  local b id pid p cmd sock tasks=$EXEC/containerd/daemon/io.containerd.runtime.v2.task/moby
  for b in "$tasks"/*/; do
    [[ -d $b ]] || continue
    id=$(basename "$b"); CIDS+=("$id")
    pid=$(cat "$b/init.pid" 2>/dev/null) || continue
    [[ $pid =~ ^[0-9]+$ ]] && grep -qF "$id" "/proc/$pid/cgroup" 2>/dev/null || continue
    kill -KILL "$pid" 2>/dev/null || true
  done
  # A frozen (paused) task only dies once thawed.
  for id in "${CIDS[@]}"; do
    while read -r f; do
      case $f in
        */freezer.state) echo THAWED >"$f" 2>/dev/null || true ;;
        */cgroup.freeze) echo 0 >"$f" 2>/dev/null || true ;;
      esac
    done < <(find /sys/fs/cgroup -maxdepth 5 -path "*/$id/*" \( -name freezer.state -o -name cgroup.freeze \) 2>/dev/null)
  done
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $p -eq $$ ]] && continue
    cmd=$(cmdline_of "$p")
    [[ $cmd == *"$WORK/"* ]] && kill -KILL "$p" 2>/dev/null || true
  done
  sleep 1
  for id in "${CIDS[@]}"; do
    # Remove the (now empty) cgroups of our containers; /docker and /docker/buildkit are shared.
    find /sys/fs/cgroup -maxdepth 4 -depth -type d -name "$id" -exec rmdir {} \; 2>/dev/null || true
    # A SIGKILLed shim leaves its socket in containerd's global state dir; its name is
    # sha256("<containerd address>/<namespace>/<id>") (containerd 1.6 shim.SocketAddress).
    sock=/run/containerd/s/$(printf '%s' "$EXEC/containerd/containerd.sock/moby/$id" | sha256sum | cut -d' ' -f1)
    [[ -S $sock ]] && rm -f "$sock"
  done
  return 0
}

# Unmount everything under the temp dir, deepest first (overlay merged dirs of live containers,
# the data root's own bind mount that dockerd makes for propagation, netns and shm mounts).
unmount_all() {
  local m i
  for i in 1 2 3 4 5; do
    mapfile -t mounts < <(awk -v w="$WORK" '$5 == w || index($5, w "/") == 1 {print $5}' \
      /proc/self/mountinfo | sort -r)
    [[ ${#mounts[@]} -eq 0 ]] && return 0
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  done
  log "warning: mounts left under $WORK"
}

cleanup() {
  local rc=$?
  set +e
  if [[ -n $DPID ]] && kill -0 "$DPID" 2>/dev/null; then
    [[ $rc -ne 0 && -f $DLOG ]] && { log "dockerd log (tail):"; tail -n 25 "$DLOG" >&2; }
    kill -KILL "$DPID" 2>/dev/null
  fi
  kill_leftovers
  unmount_all
  rm -rf --one-file-system "$WORK"
  rm -f "$OUTDIR/$ARCHIVE.part"
  [[ $rc -eq 0 ]] || log "failed (exit $rc); temp dir removed, no daemon left running"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. start the private daemon ---------------------------------------------------------------
mkdir -p "$ROOT" "$EXEC" "$WORK/client"
log "starting private dockerd in $WORK (storage driver $DRIVER, shape $SHAPE, sample $NAME)"
"$DOCKERD" "${DOCKERD_FLAGS[@]}" >"$DLOG" 2>&1 &
DPID=$!
for _ in $(seq 1 120); do
  d info >/dev/null 2>&1 && break
  kill -0 "$DPID" 2>/dev/null || { tail -n 30 "$DLOG" >&2; die "dockerd exited during start-up"; }
  sleep 0.5
done
d info >/dev/null 2>&1 || die "dockerd did not answer within 60 s"
log "dockerd $(d version --format '{{.Server.Version}}') answers (pid $DPID)"
[[ $(d info --format '{{.Driver}}') == "$DRIVER" ]] ||
  die "dockerd runs storage driver $(d info --format '{{.Driver}}'), not $DRIVER"

# --- 2. a tiny busybox base image, imported from a tar ------------------------------------------
RFS=$WORK/rootfs
mkdir -p "$RFS"/{bin,etc,root,tmp,var/log,opt/olddir}
cp "$BUSYBOX" "$RFS/bin/busybox"
for a in sh ls cat echo sleep rm touch mkdir ln chown chmod mv cp stat id true false env printf; do
  ln -s busybox "$RFS/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
  >"$RFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$RFS/etc/group"
echo "base motd: deleted by a later layer (whiteout)" >"$RFS/etc/motd"
echo a >"$RFS/opt/olddir/a.txt"
echo b >"$RFS/opt/olddir/b.txt"
chmod 1777 "$RFS/tmp"
tar -C "$RFS" --numeric-owner --owner=0 --group=0 --sort=name -cf - . |
  d import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' -m "busybox-static rootfs" - sample/busybox:base >/dev/null
log "imported sample/busybox:base"

# --- 3. a multi-layer image with the classic builder ---------------------------------------------
CTX=$WORK/ctx
mkdir -p "$CTX"
echo "hello from the build context" >"$CTX/hello.txt"
LONGDIR=/data/long/a-directory-name-that-is-fairly-long-0123456789/another-rather-long-directory-name-abcdefghij
LONGNAME=a-file-name-that-alone-is-longer-than-one-hundred-characters-so-tar-needs-a-pax-or-gnu-long-name-header.txt
if [[ $SHAPE == full ]]; then
  # one feature per layer: 5 layers above the base
  cat >"$CTX/Dockerfile" <<EOF
FROM sample/busybox:base
LABEL org.example.sample="$NAME"
ENV GREETING=hello
# a file in a nested directory
RUN mkdir -p /data/nested/deeper/deepest && echo "nested file" > /data/nested/deeper/deepest/file.txt
# delete a file of the base layer (whiteout char device 0:0 for etc/motd) and replace a base
# directory (opaque directory: xattr trusted.overlay.opaque=y on opt/olddir)
RUN rm /etc/motd && rm -rf /opt/olddir && mkdir /opt/olddir && echo new > /opt/olddir/new.txt
# a hardlink and a (relative) symlink
RUN echo "linked content" > /data/original.txt && ln /data/original.txt /data/hardlink.txt \
 && ln -s nested/deeper/deepest/file.txt /data/symlink.txt
# paths longer than 100 characters, a non-ASCII name, an odd owner and a setuid mode
RUN mkdir -p $LONGDIR && echo "long path" > $LONGDIR/file.txt && echo "long name" > /data/$LONGNAME \
 && echo "utf-8 name" > "/data/caf\$(printf '\\303\\251').txt" \
 && echo owned > /data/owned-by-1234 && chown 1234:5678 /data/owned-by-1234 && chmod 4750 /data/owned-by-1234
COPY hello.txt /app/hello.txt
WORKDIR /app
CMD ["sh"]
EOF
else
  # the same features in 3 layers above the base (each vfs layer is a full rootfs copy)
  cat >"$CTX/Dockerfile" <<EOF
FROM sample/busybox:base
LABEL org.example.sample="$NAME"
ENV GREETING=hello
# a file in a nested directory; delete a file of the base layer (a whiteout) and replace a base
# directory (an opaque directory) -- in the layer tar; vfs and overlay store full roots on disk
RUN mkdir -p /data/nested/deeper/deepest && echo "nested file" > /data/nested/deeper/deepest/file.txt \
 && rm /etc/motd && rm -rf /opt/olddir && mkdir /opt/olddir && echo new > /opt/olddir/new.txt
# a hardlink, a (relative) symlink, paths longer than 100 characters, a non-ASCII name, an odd
# owner and a setuid mode
RUN echo "linked content" > /data/original.txt && ln /data/original.txt /data/hardlink.txt \
 && ln -s nested/deeper/deepest/file.txt /data/symlink.txt \
 && mkdir -p $LONGDIR && echo "long path" > $LONGDIR/file.txt && echo "long name" > /data/$LONGNAME \
 && echo "utf-8 name" > "/data/caf\$(printf '\\303\\251').txt" \
 && echo owned > /data/owned-by-1234 && chown 1234:5678 /data/owned-by-1234 && chmod 4750 /data/owned-by-1234
COPY hello.txt /app/hello.txt
WORKDIR /app
CMD ["sh"]
EOF
fi
DOCKER_BUILDKIT=0 d build -q -t sample/app:1.0 "$CTX" >/dev/null
d tag sample/app:1.0 sample/app:latest
log "built sample/app:1.0 (classic builder), tagged sample/app:latest"

# --- 4. a second small image with BuildKit (creates buildkit/ state and snapshot dirs in the
#        driver's dir that layerdb does not reference). No bridge here, so its RUN steps need
#        --network none. Full shape only: on vfs every snapshot is one more full rootfs copy.
NOTES=()
if [[ $SHAPE == full ]]; then
  mkdir -p "$WORK/ctx-bk"
  echo "hello from buildkit" >"$WORK/ctx-bk/hello.txt"
  cat >"$WORK/ctx-bk/Dockerfile" <<'EOF'
FROM sample/busybox:base
RUN echo "built by buildkit" > /buildkit.txt
COPY hello.txt /bk/hello.txt
EOF
  if DOCKER_BUILDKIT=1 d build --network none -q -t sample/bk:1.0 "$WORK/ctx-bk" >"$WORK/bk.out" 2>&1; then
    log "built sample/bk:1.0 (BuildKit)"
  else
    cat "$WORK/bk.out" >&2
    NOTES+=("BuildKit build failed; no sample/bk:1.0 and no buildkit/ snapshots")
    log "warning: BuildKit build failed, continuing without it"
  fi
fi

# --- 5. containers in every state ---------------------------------------------------------------
# Small shape: created, exited, with-volume, running. Full shape adds anon-volume, paused and
# restarting. All use --network none: with --bridge=none the default "bridge" network does not
# exist and the container would record an endpoint with an empty NetworkID.
IMG=sample/app:1.0
RUN=(--network none)

# created: never started
d create "${RUN[@]}" --name created "$IMG" echo never-started >/dev/null
# exited: wrote a file, deleted files of image layers (whiteouts in its upper dir), logged on both
# streams, exited with code 3
d run "${RUN[@]}" --name exited "$IMG" sh -c \
  'echo "written by exited" > /data/exited-wrote.txt && mkdir /data/exited-dir &&
   rm /data/original.txt /app/hello.txt && echo to-stdout && echo to-stderr >&2; exit 3' \
  >/dev/null 2>&1 || true
[[ $(d inspect -f '{{.State.ExitCode}}' exited) == 3 ]] || die "exited: unexpected exit code"
# with-volume: a named local volume (with a label) that received a file, then exited 0
d volume create --label org.example.sample="$NAME" sample-data >/dev/null
d run "${RUN[@]}" --name with-volume -v sample-data:/vol "$IMG" \
  sh -c 'echo "payload in a named volume" > /vol/payload.txt' >/dev/null
if [[ $SHAPE == full ]]; then
  # anon-volume: an anonymous volume (64-hex name), exited 0
  d run "${RUN[@]}" --name anon-volume -v /anon "$IMG" \
    sh -c 'echo "payload in an anonymous volume" > /anon/payload.txt' >/dev/null
fi
# running: alive at the crash; wrote into its (mounted) upper dir first
d run -d "${RUN[@]}" --name running "$IMG" \
  sh -c 'echo alive > /tmp/running.txt; exec sleep 100000' >/dev/null
if [[ $SHAPE == full ]]; then
  # paused: frozen through the cgroup freezer
  d run -d "${RUN[@]}" --name paused "$IMG" \
    sh -c 'echo "about to be paused" > /tmp/paused.txt; exec sleep 100000' >/dev/null
  sleep 0.5
  if ! d pause paused >/dev/null 2>"$WORK/pause.err"; then
    NOTES+=("pause failed ($(head -c 200 "$WORK/pause.err")); container 'paused' removed")
    log "warning: docker pause failed; removing the 'paused' container"
    d rm -f paused >/dev/null
  fi
  # restarting: exits 1 at once under --restart on-failure; dockerd's back-off doubles from
  # 100 ms, so after 7 restarts it waits 12.8 s and then 25.6 s with State.Restarting=true: time
  # enough to record the truth and crash inside that window.
  d run -d "${RUN[@]}" --name restarting --restart on-failure "$IMG" sh -c 'exit 1' >/dev/null
  log "waiting for 'restarting' to reach a long restart back-off (~15 s)"
  rc_count=0 rc_state=false
  for _ in $(seq 1 120); do
    read -r rc_count rc_state < <(d inspect -f '{{.RestartCount}} {{.State.Restarting}}' restarting) ||
      true
    [[ $rc_count -ge 7 && $rc_state == true ]] && break
    sleep 0.5
  done
  [[ $rc_state == true ]] || NOTES+=("'restarting' was not in its back-off window when recorded")
fi

# --- 6. record the daemon's truth -------------------------------------------------------------
record_truth() {
  NOTES_JSON=$(printf '%s\n' "${NOTES[@]}") \
  SAMPLE=$NAME SOCK=$SOCK DOCKER_CLI=$DOCKER_CLI DOCKER_CONFIG=$WORK/client \
  python3 - "$1" <<'PY'
import json, os, subprocess, sys

DOCKER = [os.environ["DOCKER_CLI"], "-H", "unix://" + os.environ["SOCK"]]

def run(*args: str) -> str:
    return subprocess.run(DOCKER + list(args), check=True, capture_output=True, text=True).stdout

def json_lines(*args: str) -> list:
    return [json.loads(line) for line in run(*args).splitlines() if line.strip()]

ps = json_lines("ps", "-a", "--no-trunc", "--format", "{{json .}}")
cids = sorted(p["ID"] for p in ps)
images = json_lines("images", "--no-trunc", "--format", "{{json .}}")
images_all = json_lines("images", "-a", "--no-trunc", "--format", "{{json .}}")
image_ids = sorted({i["ID"] for i in images_all})
volumes = json_lines("volume", "ls", "--format", "{{json .}}")
networks = json_lines("network", "ls", "--no-trunc", "--format", "{{json .}}")
diff = {}
for cid in cids:
    try:
        diff[cid] = run("diff", cid).splitlines()
    except subprocess.CalledProcessError as e:
        diff[cid] = {"error": e.stderr.strip()}
truth = {
    "sample": os.environ["SAMPLE"],
    "docker_version": run("version", "--format", "{{.Server.Version}}").strip(),
    "driver": run("info", "--format", "{{.Driver}}").strip(),
    "ps": ps,
    "images": images,
    "images_all": images_all,
    "volumes": volumes,
    "inspect_containers": json.loads(run("container", "inspect", *cids)) if cids else [],
    "inspect_images": json.loads(run("image", "inspect", *image_ids)) if image_ids else [],
    "inspect_volumes": json.loads(run("volume", "inspect", *[v["Name"] for v in volumes]))
    if volumes else [],
    "inspect_networks": json.loads(run("network", "inspect", *[n["ID"] for n in networks])),
    "history": {i: json_lines("history", "--no-trunc", "--format", "{{json .}}", i)
                for i in image_ids},
    "diff": diff,
    "crash": {
        "how": "dockerd killed with SIGKILL right after this file was recorded; its containerd "
               "died with it; container processes and shims were then killed and mounts removed",
        "alive_at_crash": sorted(p["Names"] for p in ps if p["State"] in ("running", "paused",
                                                                           "restarting")),
    },
    "notes": [n for n in os.environ.get("NOTES_JSON", "").splitlines() if n],
}
with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump(truth, f, sort_keys=True, indent=1)
    f.write("\n")
PY
}
# The restart count of 'restarting' (full shape) must not move while the truth is recorded.
restart_count() { [[ $SHAPE == small ]] || d inspect -f '{{.RestartCount}}' restarting; }
before=$(restart_count)
record_truth "$WORK/truth.json"
if [[ $(restart_count) != "$before" ]]; then   # a restart slipped in: record again (longer window)
  log "'restarting' restarted while recording; recording again"
  before=$(restart_count); record_truth "$WORK/truth.json"
  [[ $(restart_count) == "$before" ]] || die "could not record a consistent truth"
fi

# --- 7. crash: SIGKILL dockerd (containerd dies with it), then kill what is left ---------------
log "crashing dockerd (SIGKILL pid $DPID)"
[[ $(cat "$PIDFILE") == "$DPID" ]] || die "pidfile does not name the daemon we started"
kill -KILL "$DPID"
wait "$DPID" 2>/dev/null || true
DPID=
kill_leftovers
unmount_all
if awk -v w="$WORK" 'index($5, w "/") == 1 {f=1} END {exit !f}' /proc/self/mountinfo; then
  die "mounts remain under $WORK"
fi

# --- 8. pack the data root ----------------------------------------------------------------------
# --xattrs-include='*' keeps trusted.overlay.* (opaque dirs); whiteouts are char devices 0:0 and
# need no option; hardlinks (overlay v1 layer roots, a layer's own hardlinks) stay hardlinks. pax
# headers without atime/ctime and without the pid in their names, sorted members, gzip without a
# name/timestamp, single-threaded xz: the same tree packs to the same bytes.
case $COMPRESS in
  gz) COMPRESSOR=(gzip -9n) ;;
  xz) COMPRESSOR=(xz -9 -T1 -c) ;;   # 64 MiB dictionary: the vfs rootfs copies cost next to nothing
esac
tar -C "$WORK" --numeric-owner --xattrs --xattrs-include='*' --sort=name \
  --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
  -cf - docker 2> >(grep -v 'socket ignored' >&2) | "${COMPRESSOR[@]}" >"$OUTDIR/$ARCHIVE.part"
mv "$OUTDIR/$ARCHIVE.part" "$OUTDIR/$ARCHIVE"
cp "$WORK/truth.json" "$OUTDIR/$NAME.truth.json"
log "wrote $OUTDIR/$ARCHIVE ($(du -h "$OUTDIR/$ARCHIVE" | cut -f1);" \
  "$(du -sh --apparent-size "$ROOT" | cut -f1) unpacked) and $NAME.truth.json"
