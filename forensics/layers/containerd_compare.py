"""One member of a layer's tar against its entry in a snapshot on disk: its type, its
content (a file's size and sha256, a link's target, a device's numbers, a hard link's inode),
its mode, owner and xattrs. Every read goes through a :class:`~forensics.layers.confine.
ConfinedDir`; what cannot be read is a :class:`~forensics.layers.confine.Refusal`, never an
exception. xattrs that overlayfs writes itself and the SELinux label a host gives every file are
not held against the tar."""

from __future__ import annotations

import hashlib
import os
import stat

from forensics.formats.ustar import Member
from forensics.layers.confine import ConfinedDir, Parts, Refusal
from forensics.layers.containerd_tar import CHUNK
from forensics.layers.content import DISK_TYPE as TAR_DISK_TYPE
from forensics.layers.content import close_handle, read_into

#: xattrs that the snapshot holds of its own, not from the tar
_OWN_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_SELINUX = "security.selinux"
_PAX_XATTR = "SCHILY.xattr."


class TarEntry:
    """A member as the pass compares it: its cleaned path and what the header says."""

    __slots__ = ("kind", "link", "member", "parts", "sha256")

    def __init__(self, member: Member, parts: Parts) -> None:
        self.member = member
        self.parts = parts
        self.kind = member.type
        self.sha256: str | None = None
        self.link: Parts | None = None


def content_change(cdir: ConfinedDir, entry: TarEntry, st: os.stat_result) -> str | Refusal | None:
    """What differs in the entry's content: a file's size or sha256, a link's target, a
    device's numbers, a hard link's inode; a refusal when the file cannot be read."""
    m = entry.member
    if entry.kind == "file":
        if st.st_size != m.size:
            return f"{st.st_size} bytes in the snapshot, {m.size} in the layer"
        found = hash_disk(cdir, entry.parts)
        if isinstance(found, Refusal):
            return found
        if found != entry.sha256:
            return f"sha256 {found} in the snapshot, {entry.sha256} in the layer"
    elif entry.kind == "symlink":
        target = cdir.readlink(entry.parts)
        if isinstance(target, Refusal):
            return target
        if target != m.linkname:
            return f"points to {shown_name(target)!r}, the layer has {shown_name(m.linkname)!r}"
    elif entry.kind in ("char", "block"):
        dev = (os.major(st.st_rdev), os.minor(st.st_rdev))
        if dev != (m.devmajor, m.devminor):
            return f"device {dev[0]}:{dev[1]}, the layer has {m.devmajor}:{m.devminor}"
    elif entry.kind == "hardlink" and entry.link is not None:
        linked = cdir.lstat(entry.link)
        if not isinstance(linked, Refusal) and linked.st_ino != st.st_ino:
            return f"not a hard link of {shown_name(m.linkname)!r} (another inode), as in the layer"
    return None


def metadata_changes(
    cdir: ConfinedDir, entry: TarEntry, st: os.stat_result, root: bool
) -> tuple[bool, list[str]]:
    """Mode (not of a link), owner and xattrs (not of a hard link: its inode's are the file's it
    links to) against the header, a mode change first; and whether the mode changed. ``root``:
    whether ``trusted.*`` xattrs can be read."""
    m = entry.member
    found = []
    mode_changed = (
        entry.kind not in ("symlink", "hardlink") and st.st_mode & 0o7777 != m.mode & 0o7777
    )
    if mode_changed:
        found.append(
            f"mode {st.st_mode & 0o7777:04o} in the snapshot, {m.mode & 0o7777:04o} in the layer"
        )
    if entry.kind != "hardlink":
        if (st.st_uid, st.st_gid) != (m.uid, m.gid):
            found.append(
                f"owner {st.st_uid}:{st.st_gid} in the snapshot, {m.uid}:{m.gid} in the layer"
            )
        found += xattr_changes(cdir, entry.parts, m, root)
    return mode_changed, found


#: the check of a member that the snapshot's directory refuses, by the refusal's kind
REFUSED_CHECK = {
    "missing": "snapshot-file-missing",
    "unsafe-path": "snapshot-file-type-changed",
    "not-regular": "snapshot-file-type-changed",
    "unreadable": "snapshot-file-unreadable",
}
#: the type on disk of each kind of member (a PAX sparse member is a regular file)
DISK_TYPE = {**TAR_DISK_TYPE, "sparse": stat.S_IFREG}


def hardlink_type(cdir: ConfinedDir, entry: TarEntry) -> int | None:
    """A hard link is what it links to (a regular file, mostly)."""
    if entry.link is None:
        return None
    linked = cdir.lstat(entry.link)
    return None if isinstance(linked, Refusal) else stat.S_IFMT(linked.st_mode)


def word(kind: str) -> str:
    return {"char": "character device", "block": "block device", "dir": "directory"}.get(
        kind, "regular file" if kind == "file" else kind
    )


def refused_message(refusal: Refusal, entry: TarEntry) -> str:
    if refusal.kind == "missing":
        return f"the layer has a {word(entry.kind)}, the snapshot has none"
    return refusal.detail


def hash_disk(cdir: ConfinedDir, parts: Parts) -> str | Refusal:
    opened = cdir.open_regular(parts)
    if isinstance(opened, Refusal):
        return opened
    handle, _ = opened
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    try:
        while n := read_into(handle, buf):
            digest.update(view[:n])
    except OSError as exc:
        return Refusal("unreadable", (exc.strerror or str(exc)).lower())
    finally:
        close_handle(handle)
    return digest.hexdigest()


def xattr_changes(cdir: ConfinedDir, parts: Parts, member: Member, root: bool) -> list[str]:
    """The xattrs that differ between the tar header and the snapshot's entry (those the
    snapshot keeps of its own left out; ``trusted.*`` only when running as root)."""
    tar = {k[len(_PAX_XATTR) :]: v for k, v in member.pax.items() if k.startswith(_PAX_XATTR)}
    disk = _disk_xattrs(cdir, parts)
    if disk is None:
        return []
    out = []
    for name in sorted({*tar, *disk}):
        if name.startswith(_OWN_XATTR_PREFIXES) or (name == _SELINUX and name not in tar):
            continue
        if not root and name.startswith("trusted."):
            continue
        here, there = disk.get(name), tar.get(name)
        if here != there:
            out.append(f"xattr {name} {_value(here)} in the snapshot, {_value(there)} in the layer")
    return out


def _disk_xattrs(cdir: ConfinedDir, parts: Parts) -> dict[str, bytes] | None:
    """Every xattr of the entry (never followed), None when they cannot be listed."""
    parent = cdir.dir_fd(parts[:-1])
    if isinstance(parent, Refusal):
        return None
    where = b"/proc/self/fd/%d/%s" % (parent, parts[-1])
    try:
        names = os.listxattr(where, follow_symlinks=False)
        return {n: os.getxattr(where, n, follow_symlinks=False) for n in names}
    except OSError:
        return None


def _value(value: bytes | None) -> str:
    if value is None:
        return "none"
    text = value.decode("utf-8", "replace")
    return repr(text) if text.isprintable() and len(text) <= 80 else value[:64].hex()


def shown_name(name: bytes) -> str:
    """A name of the tar or the disk for a message (undecodable bytes escaped)."""
    return name.decode("utf-8", "surrogateescape")
