"""ext4 extended attributes read from the inode's own bytes and its xattr block (no library
entry per inode), on an image made by mkfs.ext4 and debugfs: in the inode's extra space, in
the block, forty on one inode, and a POSIX ACL (left to the library, in ext4's own form).
Each is what debugfs wrote and reads back."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from test_samples_dm import needs, sbin

from forensics.fs import open_tree, walk
from forensics.fs.libyal import DecodedInode, LibyalTree

pytestmark = needs("mkfs.ext4", "debugfs")

BIG = bytes(range(256)) * 12  # 3,072 bytes: too large for the inode, kept in the block
#: a POSIX ACL as Linux's getxattr gives it (user::rw-, group::r--, other::r--)
ACL = bytes.fromhex("0200000001000600ffffffff04000400ffffffff20000400ffffffff")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("xattrs")
    img = tmp / "x.img"
    with img.open("wb") as f:
        f.truncate(16 << 20)
    subprocess.run([sbin("mkfs.ext4") or "mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256",
                    str(img)], check=True)  # fmt: skip
    (tmp / "small").write_bytes(b"abc")
    (tmp / "big").write_bytes(BIG)
    (tmp / "acl").write_bytes(ACL)
    lines = [f"write {tmp / 'small'} {name}" for name in "abcd"] + [
        f"ea_set -f {tmp / 'small'} a user.small",
        f"ea_set -f {tmp / 'big'} a user.big",
        "ea_set b trusted.t v",
        "ea_set b security.selinux system_u:object_r:x",
        f"ea_set -f {tmp / 'acl'} c system.posix_acl_access",
        *(f"ea_set d user.k{i} value-{i}" for i in range(40)),
    ]
    (tmp / "cmds").write_text("\n".join(lines) + "\n")
    subprocess.run([sbin("debugfs") or "debugfs", "-w", "-f", str(tmp / "cmds"), str(img)],
                   check=True, capture_output=True)  # fmt: skip
    return img


def test_xattrs_are_what_debugfs_wrote(image: Path) -> None:
    with image.open("rb") as f, open_tree(f, os.path.getsize(image)) as tree:
        assert tree.xattrs((b"a",)) == {b"user.small": b"abc", b"user.big": BIG}
        assert tree.xattrs((b"b",)) == {
            b"trusted.t": b"v",
            b"security.selinux": b"system_u:object_r:x",
        }
        assert tree.xattrs((b"d",)) == {f"user.k{i}".encode(): f"value-{i}".encode()
                                        for i in range(40)}  # fmt: skip
        assert b"system.posix_acl_access" in tree.xattrs((b"c",))


def test_a_big_value_in_the_block_is_read_whole(image: Path, tmp_path: Path) -> None:
    """libfsext gives a value kept in the xattr block as its first bytes and then zeros;
    read from the block itself, it is what debugfs reads."""
    out = tmp_path / "got"
    subprocess.run([sbin("debugfs") or "debugfs", "-R", f"ea_get -f {out} /a user.big",
                    str(image)], check=True, capture_output=True)  # fmt: skip
    with image.open("rb") as f, open_tree(f, os.path.getsize(image)) as tree:
        assert tree.xattrs((b"a",))[b"user.big"] == out.read_bytes() == BIG


def test_decoded_where_plain_and_the_library_elsewhere(image: Path) -> None:
    """Every member's attributes: decoded from its own bytes unless an ACL is among them;
    then read by the library, as before."""
    with image.open("rb") as f, open_tree(f, os.path.getsize(image)) as tree:
        for w in walk(tree, []):
            ino, entry = tree._resolve(w.parts)
            if not isinstance(entry, DecodedInode):
                continue
            own = tree._own_xattrs(entry.raw)
            library = LibyalTree._read_xattrs(tree, entry, ino)
            if w.parts == (b"c",):
                assert own is None and tree.xattrs(w.parts) == library
            elif w.parts != (b"a",):  # the library misreads a's big value
                assert own == library, w.parts
