#!/usr/bin/env python3
"""Build a test vault with the pkfs binary (through the mount and the CLI),
then decrypt it with the independent reader (pkfs_reader.py) and compare
every file, symlink target, mode and extended attribute, of the work tree
and of every commit, with what pkfs itself shows (the mount, `version
checkout`, `secret cat`, `version log`). Any difference fails.

    check_vault.py PKFS_BINARY WORKDIR
"""

import errno
import json
import os
import re
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pkfs_reader as R  # noqa: E402

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

PKFS, WORK = sys.argv[1], sys.argv[2]
HOME = os.path.join(WORK, "home")
MNT = os.path.join(WORK, "mnt")
PASSFILE = os.path.join(WORK, "pass")
# Not UTF-8, and ended by "\r\n": the passphrase is the first line's bytes.
PASSPHRASE = b"p\xe4ss phr\xc3\xa4se"
FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print("MISMATCH: " + msg, file=sys.stderr)


def env(root_key):
    e = dict(os.environ)
    e.update({
        "PKFS_HOME": HOME,
        "PKFS_PASSFILE": PASSFILE,
        "PKFS_TEST_ONLY_FAST_KDF": "1",
        "PKFS_TEST_ONLY_ROOT_KEY": root_key,
    })
    return e


KEYS = [os.path.join(WORK, "key%d.pem" % i) for i in (0, 1)]


def pkfs(*args, data=None, key=0, check=True):
    r = subprocess.run([PKFS] + [a if isinstance(a, bytes) else str(a) for a in args],
                       input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env(KEYS[key]))
    if check and r.returncode != 0:
        raise SystemExit("pkfs %r failed (%d): %s" % (args, r.returncode, r.stderr.decode(errors="replace")))
    return r.stdout


def commit_now():
    # A command forwarded to the daemon commits the mount's pending changes first.
    pkfs("version", "log", "v", "--json")


def m(*parts):
    return os.path.join(MNT.encode(), b"v", *[p if isinstance(p, bytes) else p.encode() for p in parts])


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def build():
    os.makedirs(WORK, exist_ok=True)
    for k in KEYS:
        key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
        with open(k, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    with open(PASSFILE, "wb") as f:
        f.write(PASSPHRASE + b"\r\nsecond line is ignored\n")
    os.chmod(PASSFILE, 0o600)
    os.makedirs(MNT, exist_ok=True)
    pkfs("init")
    pkfs("vault", "create", "v")
    # The CLI, unmounted.
    pkfs("secret", "write", "v:cli/one.txt", data=b"one\n")
    pkfs("secret", "mkdir", "v:cli/sub")
    pkfs("secret", "write", "v:cli/sub/two", data=b"\x00\x01two" * 3000)
    pkfs("mount", "--commit-delay", "60s", MNT)
    # Through the mount: one batch of everything.
    os.mkdir(m("d"))
    os.mkdir(m("d", "inner"))
    write(m("d", "empty"), b"")
    write(m("d", "one"), b"x")
    write(m("d", "page"), bytes(range(256)) * 16)
    write(m("d", "page+1"), bytes(range(256)) * 16 + b"!")
    write(m("d", "inner", "big"), os.urandom(3 * 1024 * 1024 // 2))
    write(m("d", b"caf\xe9 latin-1"), b"not utf-8 name\n")
    write(m("d", "n" * 200), b"a long name\n")
    os.mkdir(m("d", b"\xff" * 170))
    write(m("d", b"\xff" * 170, "in-long-dir"), b"deep\n")
    os.symlink(b"../cli/one.txt", m("d", "link"))
    os.symlink(b"t" * 3043, m("d", "longest-link"))
    try:
        os.symlink(b"t" * 3044, m("d", "too-long-link"))
        fail("a symlink target of 3044 bytes was accepted")
    except OSError as e:
        if e.errno != errno.ENAMETOOLONG:
            fail("a 3044-byte symlink target: %s" % e)
    if os.lstat(m("d", "longest-link")).st_size != 3043:
        fail("size of a 3043-byte symlink: %d" % os.lstat(m("d", "longest-link")).st_size)
    os.mkfifo(m("d", "fifo"))
    os.setxattr(m("d", "one"), b"user.comment", b"hello")
    os.setxattr(m("d", "one"), b"user." + b"x" * 154, b"\x00binary\xff")
    os.setxattr(m("d"), b"user.on-a-dir", b"")
    os.setxattr(m("d", "one"), b"user." + b"L" * 250, b"long name")
    write(m("d", "tool"), b"#!/bin/sh\necho hi\n")
    os.chmod(m("d", "tool"), 0o750)
    write(m("d", "write-only"), b"cannot read me\n")
    os.chmod(m("d", "write-only"), 0o200)
    os.link(m("cli", "one.txt"), m("d", "hard-link"))
    check_xattr_errors()
    # The journal holds this batch until it is committed.
    records = R.Vault(HOME, R.read_passphrase(PASSFILE), "v").journal()
    kinds = sorted({k for k, _ in records})
    if not records or not set(kinds) <= {1, 3, 5} or 5 not in kinds:
        fail("journal before the commit: kinds %r" % kinds)
    for k, data in records:
        for path in data.split(b"\0"):
            if not path.startswith(b"contents/"):
                fail("journal record %d names %r" % (k, path))
    commit_now()
    # A moved directory, a modified, a removed file.
    os.rename(m("d", "inner"), m("moved"))
    write(m("d", "one"), b"y")
    os.unlink(m("d", "page"))
    commit_now()
    # A chmod-only change of a file (its executable bit is versioned).
    os.chmod(m("d", "page+1"), 0o700)
    commit_now()
    # A directory changed only by chmod and xattr, with a file beside it.
    os.chmod(m("moved"), 0o750)
    os.setxattr(m("moved"), b"user.k", b"v")
    write(m("d", "beside"), b"beside\n")
    commit_now()
    # The CLI while mounted (forwarded to the daemon).
    pkfs("secret", "write", "v:cli/three", data=b"three\n")
    pkfs("secret", "mv", "v:cli/sub", "v:cli-sub-moved")
    # A rotated root key.
    pkfs("key", "rotate-root", key=1)
    write(m("after-rotation"), b"written after the root key rotation\n")
    commit_now()
    # A FIFO removed, a symlink replaced.
    os.unlink(m("d", "fifo"))
    os.unlink(m("d", "link"))
    os.symlink(b"/absolute/elsewhere", m("d", "link"))
    commit_now()


def check_xattr_errors():
    """The errors docs/FORMAT.md gives for extended attributes."""
    cases = [
        (m("d", "one"), b"user." + b"x" * 251, errno.ERANGE),
        (m("d", "one"), b"user.", errno.EINVAL),
        (m("d", "one"), b"trusted.x", errno.EOPNOTSUPP),
        (m(), b"user.x", errno.EPERM),
        (MNT.encode(), b"user.x", errno.EPERM),
    ]
    for path, name, want in cases:
        try:
            os.setxattr(path, name, b"v")
            fail("setxattr %r on %r succeeded" % (name[:20], path))
        except OSError as e:
            if e.errno != want:
                fail("setxattr %r on %r: %s, not %s" % (name[:20], path, e, errno.errorcode[want]))
    for path, want in [(m(), errno.ENODATA), (MNT.encode(), errno.EPERM)]:
        try:
            os.getxattr(path, b"user.x")
            fail("getxattr on %r succeeded" % path)
        except OSError as e:
            if e.errno != want:
                fail("getxattr on %r: %s" % (path, e))


def mount_tree():
    """{plaintext path: Node} as the mount shows it."""
    out = {}
    root = m()

    def walk(d, rel):
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            r = rel + b"/" + name if rel else name
            st = os.lstat(p)
            x = None
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                x = {n.encode(): os.getxattr(p, n, follow_symlinks=False)
                     for n in os.listxattr(p, follow_symlinks=False)}
            mode = st.st_mode & 0o7777
            if stat.S_ISDIR(st.st_mode):
                out[r] = R.Node("dir", None, mode, x)
                walk(p, r)
            elif stat.S_ISREG(st.st_mode):
                if mode & 0o400 == 0:
                    os.chmod(p, mode | 0o400)
                    data = open(p, "rb").read()
                    os.chmod(p, mode)
                else:
                    data = open(p, "rb").read()
                out[r] = R.Node("file", data, mode, x)
            elif stat.S_ISLNK(st.st_mode):
                t = os.readlink(p)
                if st.st_size != len(t):
                    fail("%r: symlink size %d, target %d bytes" % (r, st.st_size, len(t)))
                out[r] = R.Node("symlink", t, None, None)
            else:
                out[r] = R.Node(R.special_kind(st.st_mode), None, mode, None)

    walk(root, b"")
    return out


def compare(what, mine, theirs, history=False):
    """Exact comparison of two {path: Node}; with `history`, only versioned
    kinds are expected, and only a file's executable bit is a mode."""
    if history:
        theirs = {k: v for k, v in theirs.items() if v.kind in ("file", "dir", "symlink")}
    for p in sorted(set(mine) | set(theirs)):
        a, b = mine.get(p), theirs.get(p)
        if a is None or b is None:
            fail("%s: %r only in %s" % (what, p, "pkfs" if a is None else "the reader"))
            continue
        if a.kind != b.kind or a.data != b.data:
            fail("%s: %r differs (%s vs %s)" % (what, p, a.describe(), b.describe()))
        if history:
            if a.kind == "file" and bool(a.mode & 0o100) != bool(b.mode & 0o100):
                fail("%s: %r executable bit differs" % (what, p))
        elif a.mode != b.mode or (a.xattrs or {}) != (b.xattrs or {}):
            fail("%s: %r mode or xattrs differ (%s vs %s)" % (what, p, a.describe(), b.describe()))


def check_change_list(v, cid, changes, tree, parent_tree):
    """The rules of the change list in docs/FORMAT.md, against the trees: a
    listed path is in the commit's tree or its parent's (unless the list
    names it more than once: made and removed in one commit), directories
    end in `/`, and nothing else does."""
    seen = {}
    for c in changes:
        seen[c["path"].rstrip("/")] = seen.get(c["path"].rstrip("/"), 0) + 1
    for c in changes:
        path = c["path"]
        if "\ufffd" in path:
            continue
        bare = path.rstrip("/")
        first, second = (parent_tree, tree) if c["kind"] == "removed" else (tree, parent_tree)
        name = R.path_text_decode(bare)
        node = first.get(name) or second.get(name)
        if node is None:
            if seen[bare] == 1:
                fail("commit %s: %r is in neither tree" % (cid[:8], path))
        elif (node.kind == "dir") != path.endswith("/"):
            fail("commit %s: %r (a %s) breaks the trailing-slash rule" % (cid[:8], path, node.kind))


def main():
    build()
    v = R.Vault(HOME, R.read_passphrase(PASSFILE), "v")
    if v.root_key_version != 2:
        fail("root.key version %d" % v.root_key_version)
    work = v.work_tree()
    compare("work tree", work, mount_tree())
    # What `secret cat` prints.
    for p, node in sorted(work.items()):
        # The CLI takes only UTF-8 paths in its arguments.
        if node.kind == "file" and p.decode("utf-8", "replace").encode() == p:
            if pkfs("secret", "cat", b"v:" + p) != node.data:
                fail("secret cat %r differs" % p)
    # Every commit, its change list as `version log` shows it.
    log = json.loads(pkfs("version", "log", "v", "--json", "--all"))
    by_id = {e["id"]: e for e in log}
    commits = v.commits()
    if set(commits) != set(by_id):
        fail("commits: reader %d, pkfs %d" % (len(commits), len(by_id)))
    trees = {}
    for cid in commits:
        _, parents, changes = v.commit(cid)
        if cid in by_id and by_id[cid]["changes"] != changes:
            fail("commit %s: change list differs: %r vs %r" % (cid[:8], changes, by_id[cid]["changes"]))
        trees[cid] = v.commit_tree(cid)
        check_change_list(v, cid, changes, trees[cid], trees[parents[0]] if parents else {})
    for cid in commits:
        pkfs("version", "checkout", "v", cid)
        compare("commit %s" % cid[:8], trees[cid], mount_tree(), history=True)
        compare("work tree at %s" % cid[:8], v.work_tree(), mount_tree())
        state = v.check_version()
        if state["head"] != cid:
            fail("version record: HEAD %s after checking out %s" % (state["head"], cid))
    # A write at an older version: main's later versions go to a discarded ref.
    pkfs("version", "checkout", "v", commits[-3])
    write(m("at-an-older-version"), b"discards the two later versions\n")
    commit_now()
    refs, head, attached = v.refs()
    discarded = [r for r in refs if r.startswith("refs/pkfs/discarded/")]
    if len(discarded) != 1 or not re.fullmatch(r"refs/pkfs/discarded/[0-9]{20}", discarded[0]):
        fail("discarded refs: %r" % discarded)
    if attached != "refs/heads/main" or refs.get("refs/heads/main") != head:
        fail("HEAD after a write at an older version: %r %r" % (head, attached))
    _, parents, _ = v.commit(head)
    if parents != [commits[-3]]:
        fail("the new commit's parent is %r, not the version checked out" % parents)
    log = json.loads(pkfs("version", "log", "v", "--json", "--all"))
    by_id = {e["id"]: e for e in log}
    commits = v.commits()
    if set(commits) != set(by_id):
        fail("with discarded versions: reader %d commits, pkfs %d" % (len(commits), len(by_id)))
    for cid in commits:
        if v.commit(cid)[2] != by_id[cid]["changes"]:
            fail("commit %s: change list differs" % cid[:8])
        trees[cid] = v.commit_tree(cid)
    final = mount_tree()
    compare("latest", v.work_tree(), final)
    compare("latest commit", trees[head], final, history=True)
    if v.check_tags() < 1:
        fail("no tag list for the big file")
    # After `gc`: the discarded versions are gone, the rest is packed.
    pkfs("gc", "v")
    refs, _, _ = v.refs()
    if any(r.startswith("refs/pkfs/discarded/") for r in refs):
        fail("discarded refs after gc: %r" % sorted(refs))
    log = json.loads(pkfs("version", "log", "v", "--json", "--all"))
    if sorted(e["id"] for e in log) != sorted(v.commits()):
        fail("after gc: the reader's commits are not version log's")
    for e in log:
        if v.commit(e["id"])[2] != e["changes"] or v.commit_tree(e["id"]).keys() != trees[e["id"]].keys():
            fail("after gc: commit %s reads differently" % e["id"][:8])
    pkfs("umount", MNT)
    v = R.Vault(HOME, R.read_passphrase(PASSFILE), "v")
    compare("unmounted", v.work_tree(), final)
    state = v.check_version()
    if not state["attached"] or state["head"] != head:
        fail("version record after umount: %r" % state)
    # A version-1 root.key (one slot, no count, no digest) opens in both, and
    # pkfs rewrites it as version 2 at its next unlock.
    with open(os.path.join(HOME, "root.key"), "rb") as f:
        _, slots = R.parse_root_key(f.read())
    v1 = b"PKFSROOT\x01" + bytes([slots[0][0]]) + slots[0][1]
    with open(os.path.join(HOME, "root.key"), "wb") as f:
        f.write(v1)
    if R.Vault(HOME, R.read_passphrase(PASSFILE), "v").root_key_version != 1:
        fail("the reader did not see a version-1 root.key")
    pkfs("vault", "list")
    if R.Vault(HOME, R.read_passphrase(PASSFILE), "v").root_key_version != 2:
        fail("pkfs did not rewrite a version-1 root.key as version 2")
    # The reader is no rubber stamp: one flipped byte of one blob fails it.
    blob = next(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(v.dir, "contents"))
                for f in fs if not f.startswith(".") and os.path.getsize(os.path.join(dp, f)) > 0)
    with open(blob, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    try:
        v.work_tree()
        fail("a blob with one flipped byte was read")
    except R.FormatError:
        pass
    print("reader: %d commits, %d entries compared; %d mismatches"
          % (len(commits), len(final), len(FAILURES)))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        subprocess.run(["umount", "-l", MNT], stderr=subprocess.DEVNULL)
    sys.exit(rc)
