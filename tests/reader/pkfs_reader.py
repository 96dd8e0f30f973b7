#!/usr/bin/env python3
"""An independent reader of pkfs vaults, written from docs/FORMAT.md alone.

It opens a node home with a passphrase file, unwraps a vault's keys, and
decrypts names, blobs, symlink targets and extended attributes of the work
tree (`vaults/<id>/contents/`) and of every commit of the vault's git history
(read with `git cat-file`), authenticating every commit message, the version
record and the tag lists on the way. It shares no code with pkfs: only the
`cryptography` package (AES-GCM, AES-SIV, HKDF, RSA-OAEP, Argon2id) and git.

    pkfs_reader.py HOME PASSFILE VAULT tree            # the work tree
    pkfs_reader.py HOME PASSFILE VAULT log             # every commit, decrypted
    pkfs_reader.py HOME PASSFILE VAULT show COMMIT     # one commit's tree
    pkfs_reader.py HOME PASSFILE VAULT journal         # the change journal's records

Every failed check raises `FormatError`; nothing unauthenticated is printed.
Section names in comments are those of docs/FORMAT.md.
"""

import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys

from cryptography.hazmat.primitives import serialization

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pkfs_format import (  # noqa: E402
    FormatError, Links, Names, b64std_decode, parse_root_key, blob_tags, decode_entries, decrypt_blob,
    envelope_open, hkdf, open_root_key, path_text_decode, raw_xattrs, read_metadata, read_passphrase,
    shown_mode, special_kind, u32, vault_keys,
)

__all__ = ["FormatError", "Node", "Vault", "parse_root_key", "path_text_decode", "read_passphrase", "special_kind"]

# --- A decrypted tree ----------------------------------------------------------


class Node:
    """One plaintext entry: kind is file, dir, symlink, fifo, socket, char or
    block; data is a file's content or a symlink's target; mode is what the
    mount shows (work tree) or 0o755/0o644 from git's file mode (history);
    xattrs are the plaintext extended attributes (work tree only)."""

    def __init__(self, kind, data=None, mode=None, xattrs=None):
        self.kind, self.data, self.mode, self.xattrs = kind, data, mode, xattrs

    def describe(self):
        d = {"kind": self.kind}
        if self.data is not None:
            d["sha256"] = hashlib.sha256(self.data).hexdigest()
            d["size"] = len(self.data)
        if self.mode is not None:
            d["mode"] = "%o" % self.mode
        if self.xattrs:
            d["xattrs"] = {k.decode("latin-1"): v.hex() for k, v in sorted(self.xattrs.items())}
        return d


class Vault:
    def __init__(self, home, passphrase, name):
        self.home = home
        der, key, self.root_key_version = open_root_key(home, passphrase)
        with open(os.path.join(home, "root.pub"), "rb") as f:
            pub = serialization.load_pem_public_key(f.read())
        spki = lambda k: k.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if spki(pub) != spki(key.public_key()):
            raise FormatError("root.pub does not match root.key")
        self.table = read_metadata(home, der, key)
        self.id, self.keys = vault_keys(self.table, name, key)
        self.dir = os.path.join(home, "vaults", self.id)
        key0 = self.keys[0]
        self.names = Names(key0)
        self.links = Links(key0, self.names)
        self.history_key = hkdf(key0, b"pkfs history v1")
        self.journal_key = hkdf(key0, b"pkfs journal v1")
        self.version_key = hkdf(key0, b"pkfs version v1")
        self.tags_key = hkdf(key0, b"pkfs tags v1")
        self._git = None

    # The work tree.

    def work_tree(self):
        """{plaintext path (bytes, '/'-separated): Node} of contents/."""
        out = {}
        self._walk_work(os.path.join(self.dir, "contents").encode(), b"", out)
        return out

    def _walk_work(self, backing, plain, out):
        with open(os.path.join(backing, b".diriv"), "rb") as f:
            diriv = f.read()
        if len(diriv) != 16:
            raise FormatError(".diriv of %d bytes" % len(diriv))
        listed = sorted(os.listdir(backing))

        def sidecar(e):
            with open(os.path.join(backing, e), "rb") as f:
                return f.read()

        for entry, name in decode_entries(self.names, diriv, listed, sidecar).items():
            path = os.path.join(backing, entry)
            rel = plain + b"/" + name if plain else name
            st = os.lstat(path)
            raw = raw_xattrs(path)
            xattrs = self.links.xattrs(raw)
            mode = shown_mode(st.st_mode, raw)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = Node("dir", None, mode, xattrs)
                self._walk_work(path, rel, out)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    out[rel] = Node("file", decrypt_blob(f.read(), self.keys), mode, xattrs)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = Node("symlink", self.links.target(os.readlink(path)), None, xattrs)
            else:
                out[rel] = Node(special_kind(st.st_mode), None, mode, xattrs)

    # The history.

    def git(self, *args, data=None):
        r = subprocess.run(
            ["git", "--git-dir", os.path.join(self.dir, ".git")] + list(args),
            input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
        )
        if r.returncode != 0:
            raise FormatError("git %s: %s" % (" ".join(args), r.stderr.decode(errors="replace")))
        return r.stdout

    def object(self, oid, kind):
        return self.git("cat-file", kind, oid)

    def refs(self):
        """{ref name: commit id} of every ref, and what HEAD names."""
        refs = {}
        for line in self.git("for-each-ref", "--format=%(refname) %(objectname)").splitlines():
            n, oid = line.decode().split(" ")
            refs[n] = oid
        head = self.git("rev-parse", "HEAD").decode().strip()
        sym = subprocess.run(
            ["git", "--git-dir", os.path.join(self.dir, ".git"), "symbolic-ref", "-q", "HEAD"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False,
        )
        attached = sym.stdout.decode().strip() if sym.returncode == 0 else None
        return refs, head, attached

    def commits(self):
        """Every commit reachable from any ref or HEAD, oldest first."""
        out = self.git("rev-list", "--all", "HEAD", "--topo-order", "--reverse")
        return [l.decode() for l in out.splitlines()]

    def commit(self, oid):
        """(tree id, [parent ids], decrypted change list)."""
        raw = self.object(oid, "commit")
        headers, _, message = raw.partition(b"\n\n")
        tree, parents = None, []
        for line in headers.split(b"\n"):
            if line.startswith(b"tree "):
                tree = line[5:].decode()
            elif line.startswith(b"parent "):
                parents.append(line[7:].decode())
        if not message.startswith(b"pkfs\n\n") or not message.endswith(b"\n"):
            raise FormatError("commit %s: message is not pkfs's" % oid)
        env = b64std_decode(message[len(b"pkfs\n\n"):-1])
        aad = b"pkfs history v2" + bytes.fromhex(tree) + b"".join(bytes.fromhex(p) for p in parents)
        changes = json.loads(envelope_open(self.history_key, env, aad).decode("utf-8"))
        for c in changes:
            if c.get("kind") not in ("added", "modified", "removed") or not isinstance(c.get("path"), str):
                raise FormatError("commit %s: bad change %r" % (oid, c))
        return tree, parents, changes

    def ls_tree(self, tree):
        """{name (bytes): (mode, type, id)} of one git tree."""
        out = {}
        for rec in self.git("ls-tree", "-z", tree).split(b"\0"):
            if not rec:
                continue
            meta, _, name = rec.partition(b"\t")
            mode, kind, oid = meta.decode().split(" ")
            out[name] = (mode, kind, oid)
        return out

    def commit_tree(self, oid):
        """{plaintext path: Node} of the commit's `contents/`."""
        tree, _, _ = self.commit(oid)
        top = self.ls_tree(tree)
        if set(top) != {b"contents"} or top[b"contents"][0] != "040000":
            raise FormatError("commit %s tracks %r, not contents/ alone" % (oid, list(top)))
        out = {}
        self._walk_git(top[b"contents"][2], b"", out)
        return out

    def _walk_git(self, tree, plain, out):
        entries = self.ls_tree(tree)
        if b".diriv" not in entries or entries[b".diriv"][0] != "100644":
            raise FormatError("a directory without its .diriv in git")
        diriv = self.object(entries[b".diriv"][2], "blob")
        if len(diriv) != 16:
            raise FormatError(".diriv of %d bytes" % len(diriv))

        def sidecar(e):
            if e not in entries:
                raise FormatError("long name without its sidecar")
            return self.object(entries[e][2], "blob")

        for entry, name in decode_entries(self.names, diriv, sorted(entries), sidecar).items():
            mode, kind, oid = entries[entry]
            rel = plain + b"/" + name if plain else name
            if mode == "040000":
                out[rel] = Node("dir")
                self._walk_git(oid, rel, out)
            elif mode in ("100644", "100755"):
                data = self.object(oid, "blob")
                out[rel] = Node("file", decrypt_blob(data, self.keys),
                                0o755 if mode == "100755" else 0o644)
            elif mode == "120000":
                out[rel] = Node("symlink", self.links.target(self.object(oid, "blob")))
            else:
                raise FormatError("git mode %s in a vault" % mode)

    # Version record, tag lists, journal.

    def check_version(self):
        """The version record, authenticated; checked against the refs."""
        with open(os.path.join(self.dir, "version"), "rb") as f:
            rec = f.read()
        if len(rec) != 90 or rec[:8] != b"PKFSVERS" or rec[8] != 1:
            raise FormatError("version record malformed")
        mac = hmac.new(self.version_key, rec[:58], "sha256").digest()
        if not hmac.compare_digest(mac, rec[58:]):
            raise FormatError("version record does not authenticate")
        main, head, attached = rec[17:37].hex(), rec[37:57].hex(), rec[57]
        refs, git_head, git_attached = self.refs()
        if refs.get("refs/heads/main") != main or git_head != head:
            raise FormatError("refs disagree with the version record")
        if (attached == 1) != (git_attached == "refs/heads/main"):
            raise FormatError("HEAD attachment disagrees with the version record")
        if attached == 1 and main != head:
            raise FormatError("attached, but HEAD is not main")
        return {"counter": int.from_bytes(rec[9:17], "big"), "main": main,
                "head": head, "attached": attached == 1}

    def check_tags(self):
        """Every tag list: authenticated, and equal to its blob's tags."""
        d = os.path.join(self.dir, "tags")
        if not os.path.isdir(d):
            return 0
        n = 0
        for name in sorted(os.listdir(d)):
            if name.startswith(".tmp-"):
                continue
            with open(os.path.join(d, name), "rb") as f:
                t = f.read()
            body, mac = t[:-32], t[-32:]
            if not hmac.compare_digest(hmac.new(self.tags_key, body, "sha256").digest(), mac):
                raise FormatError("tag list %s does not authenticate" % name)
            if body[:8] != b"PKFSTAGS" or body[8] != 1 or body[9:29].hex() != name:
                raise FormatError("tag list %s malformed" % name)
            blob = self.object(name, "blob")
            length = int.from_bytes(body[29:37], "big")
            header, tags = blob_tags(blob)
            if length != len(blob) or length < (1 << 20) or body[37:95] != header:
                raise FormatError("tag list %s: length or header differs" % name)
            if body[95:] != b"".join(tags):
                raise FormatError("tag list %s: tags differ" % name)
            n += 1
        return n

    def journal(self):
        """The records of V/journal: [(kind, data)], up to the first that
        fails (a journal covers less, never more)."""
        path = os.path.join(self.dir, "journal")
        if not os.path.exists(path):
            return []
        with open(path, "rb") as f:
            data = f.read()
        refs, head, _ = self.refs()
        head_id = bytes.fromhex(head) if head else b"\0" * 20
        out, pos, i = [], 0, 0
        while pos + 4 <= len(data):
            n = u32(data[pos:pos + 4])
            rec = data[pos + 4:pos + 4 + n]
            if len(rec) != n or not 28 <= n <= 1 << 20:
                break
            aad = b"pkfs journal v1" + head_id + i.to_bytes(8, "big")
            try:
                plain = envelope_open(self.journal_key, rec, aad)
            except FormatError:
                break
            if not plain:
                break
            kind, body = plain[0], plain[1:]
            if kind == 1:
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError:
                    break
            elif kind in (3, 4, 5):
                if b"\0" not in body:
                    break
            elif kind == 2:
                if len(body) != 20:
                    break
            elif kind == 6:
                if body:
                    break
            else:
                break
            out.append((kind, body))
            pos += 4 + n
            i += 1
        return out


def dump(tree):
    return {k.decode("utf-8", "surrogateescape"): v.describe() for k, v in sorted(tree.items())}


def main(argv):
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    home, passfile, name, cmd = argv[1:5]
    v = Vault(home, read_passphrase(passfile), name)
    if cmd == "tree":
        out = dump(v.work_tree())
    elif cmd == "show":
        out = dump(v.commit_tree(argv[5]))
    elif cmd == "log":
        out = []
        for c in v.commits():
            _, parents, changes = v.commit(c)
            out.append({"id": c, "parents": parents, "changes": changes,
                        "tree": dump(v.commit_tree(c))})
        out = {"version": v.check_version(), "tag_lists": v.check_tags(), "commits": out}
    elif cmd == "journal":
        out = [{"kind": k, "data": d.decode("utf-8", "replace")} for k, d in v.journal()]
    else:
        print(__doc__, file=sys.stderr)
        return 2
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except FormatError as e:
        print("pkfs_reader: %s" % e, file=sys.stderr)
        sys.exit(1)
