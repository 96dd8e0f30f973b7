#!/usr/bin/env python3
"""Recompute every test vector of docs/FORMAT.md with the independent
reader's primitives (pkfs_format.py), and the journal's origins with the
document's own rules: the document, the library (tests/format_vectors.rs)
and this second implementation must all agree.

    check_vectors.py [docs/FORMAT.md]
"""

import base64
import hashlib
import hmac
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pkfs_format as F  # noqa: E402

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id  # noqa: E402


def load(path):
    vectors, block = [], None
    for line in open(path, encoding="utf-8"):
        t = line.strip()
        if block is None:
            if t == "```vectors":
                block = {}
        elif t == "```":
            vectors.append(block)
            block = None
        elif t and not t.startswith("#"):
            k, _, v = t.partition("=")
            block[k.strip()] = v.strip()
    return vectors


def bytes_of(value):
    out = b""
    for tok in value.split():
        hexpart, _, n = tok.partition("*")
        out += bytes.fromhex(hexpart) * (int(n) if n else 1)
    return out


def seal(key, iv, plain, aad):
    ct = AESGCM(key).encrypt(iv, plain, aad)
    return iv + ct[-16:] + ct[:-16]


def gf_mul(a, b):
    """Multiplication in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1 (0x11b)."""
    r = 0
    while b:
        if b & 1:
            r ^= a
        a = (a << 1) ^ (0x11B if a & 0x80 else 0)
        b >>= 1
    return r


def gf_inv(a):
    r = 1
    for _ in range(254):
        r = gf_mul(r, a)
    return r


def gf_combine(points):
    """Lagrange interpolation at x = 0, byte by byte."""
    out = bytearray(len(points[0][1]))
    for j, (xj, yj) in enumerate(points):
        num, den = 1, 1
        for m, (xm, _) in enumerate(points):
            if m != j:
                num = gf_mul(num, xm)
                den = gf_mul(den, xj ^ xm)
        coef = gf_mul(num, gf_inv(den))
        for i, byte in enumerate(yj):
            out[i] ^= gf_mul(byte, coef)
    return bytes(out)


class Checker:
    def __init__(self):
        self.failures = 0

    def eq(self, vid, what, got, want):
        if got != want:
            self.failures += 1
            print("vector %s: %s differs:\n  got  %r\n  want %r" % (vid, what, got, want), file=sys.stderr)

    def blob(self, v):
        vid, key = v["id"], bytes_of(v["vault_key"])
        gen, file_id, salt = int(v["generation"]), bytes_of(v["file_id"]), bytes_of(v["salt"])
        plain = bytes_of(v["plaintext"])
        file_key = F.hkdf(key, b"pkfs content v1", salt=salt)
        self.eq(vid, "file_key", file_key, bytes_of(v["file_key"]))
        header = b"PKFS\x01\x00" + gen.to_bytes(4, "big") + file_id + salt
        self.eq(vid, "header", header, bytes_of(v["header"]))
        count = -(-len(plain) // 4096)
        blob = header
        for i in range(count):
            aad = file_id + i.to_bytes(8, "big") + (b"\x01" if i == count - 1 else b"\x00")
            self.eq(vid, "page.%d.aad" % i, aad, bytes_of(v["page.%d.aad" % i]))
            page = seal(file_key, bytes_of(v["iv.%d" % i]), plain[i * 4096:(i + 1) * 4096], aad)
            self.eq(vid, "page.%d.iv_tag" % i, page[:28], bytes_of(v["page.%d.iv_tag" % i]))
            if "page.%d.ciphertext" % i in v:
                self.eq(vid, "page.%d.ciphertext" % i, page[28:], bytes_of(v["page.%d.ciphertext" % i]))
            blob += page
        if "blob" in v:
            self.eq(vid, "blob", blob, bytes_of(v["blob"]))
        self.eq(vid, "blob_len", len(blob), int(v["blob_len"]))
        self.eq(vid, "blob_sha256", hashlib.sha256(blob).digest(), bytes_of(v["blob_sha256"]))
        self.eq(vid, "read back", F.decrypt_blob(blob, {gen: key}), plain)
        return blob

    def name(self, v):
        vid, key, diriv, name = v["id"], bytes_of(v["vault_key"]), bytes_of(v["diriv"]), bytes_of(v["name"])
        self.eq(vid, "name_key", F.hkdf(key, b"pkfs names v1", length=64), bytes_of(v["name_key"]))
        k = 16 - len(name) % 16
        self.eq(vid, "padded", name + bytes([k]) * k, bytes_of(v["padded"]))
        names = F.Names(key)
        encoded = names.encrypt(name, diriv)
        self.eq(vid, "encoded", encoded.decode(), v["encoded"])
        self.eq(vid, "disk", "direct" if len(encoded) <= 255 else "long", v["disk"])
        if len(encoded) > 255:
            entry = b".L." + F.b64url_encode(hashlib.sha256(encoded).digest())
            self.eq(vid, "entry", entry.decode(), v["entry"])
            self.eq(vid, "sidecar", (entry + b".name").decode(), v["sidecar"])
            self.eq(vid, "sidecar_content", encoded.decode(), v["sidecar_content"])
        self.eq(vid, "decrypts", names.decrypt(encoded, diriv), name)

    def symlink(self, v):
        vid, key, target = v["id"], bytes_of(v["vault_key"]), bytes_of(v["target"])
        link_key = F.hkdf(key, b"pkfs symlink v1")
        self.eq(vid, "link_key", link_key, bytes_of(v["link_key"]))
        disk = F.b64url_encode(seal(link_key, bytes_of(v["iv"]), target, b"pkfs symlink v1"))
        self.eq(vid, "disk", disk.decode(), v["disk"])
        self.eq(vid, "reads back", F.Links(key, F.Names(key)).target(disk), target)

    def xattr(self, v):
        vid, key = v["id"], bytes_of(v["vault_key"])
        name, value = bytes_of(v["name"]), bytes_of(v["value"])
        xattr_key = F.hkdf(key, b"pkfs xattr v1")
        self.eq(vid, "xattr_key", xattr_key, bytes_of(v["xattr_key"]))
        names = F.Names(key)
        disk_name = b"user.pkfs." + names.encrypt(name, b"\xff" * 16)
        self.eq(vid, "disk_name", disk_name.decode(), v["disk_name"])
        sealed = seal(xattr_key, bytes_of(v["iv"]), value, disk_name)
        self.eq(vid, "sealed", sealed, bytes_of(v["sealed"]))
        self.eq(vid, "reads back", F.Links(key, names).xattrs({disk_name: sealed}), {name: value})

    def xattr_long(self, v):
        vid, key = v["id"], bytes_of(v["vault_key"])
        name, value = bytes_of(v["name"]), bytes_of(v["value"])
        names = F.Names(key)
        enc = names.encrypt(name, b"\xff" * 16)
        self.eq(vid, "encrypted_name", enc.decode(), v["encrypted_name"])
        disk_name = b"user.pkfs.l." + F.b64url_encode(hashlib.sha256(enc).digest())
        self.eq(vid, "disk_name", disk_name.decode(), v["disk_name"])
        sealed = seal(F.hkdf(key, b"pkfs xattr v1"), bytes_of(v["iv"]), value, disk_name)
        stored = len(enc).to_bytes(2, "big") + enc + sealed
        self.eq(vid, "stored", stored, bytes_of(v["stored"]))
        self.eq(vid, "reads back", F.Links(key, names).xattrs({disk_name: stored}), {name: value})

    def tags(self, v, blobs):
        vid, key = v["id"], bytes_of(v["vault_key"])
        blob = blobs[v["of"]]
        tag_key = F.hkdf(key, b"pkfs tags v1")
        self.eq(vid, "tag_key", tag_key, bytes_of(v["tag_key"]))
        blob_id = hashlib.sha1(b"blob %d\0" % len(blob) + blob).digest()
        self.eq(vid, "blob_id", blob_id, bytes_of(v["blob_id"]))
        header, tags = F.blob_tags(blob)
        body = b"PKFSTAGS\x01" + blob_id + len(blob).to_bytes(8, "big") + header + b"".join(tags)
        body += hmac.new(tag_key, body, "sha256").digest()
        self.eq(vid, "tags", body, bytes_of(v["tags"]))

    def journal(self, v):
        vid, key, head = v["id"], bytes_of(v["vault_key"]), bytes_of(v["head"])
        journal_key = F.hkdf(key, b"pkfs journal v1")
        self.eq(vid, "journal_key", journal_key, bytes_of(v["journal_key"]))
        records, i = [], 0
        while "plain.%d" % i in v:
            plain = bytes_of(v["plain.%d" % i])
            aad = b"pkfs journal v1" + head + i.to_bytes(8, "big")
            env = seal(journal_key, bytes_of(v["iv.%d" % i]), plain, aad)
            self.eq(vid, "record.%d" % i, len(env).to_bytes(4, "big") + env, bytes_of(v["record.%d" % i]))
            kind, data = plain[0], plain[1:].decode()
            records.append((kind,) + tuple(data.split("\0")) if kind in (3, 4, 5) else (kind, data))
            i += 1
        k = 0
        while "origin.%d" % k in v:
            path, want = v["origin.%d" % k].split(" ")
            self.eq(vid, "origin of %s" % path, origin(records, path), want)
            k += 1
        if "command" in v:
            self.eq(vid, "command", " ".join(command_paths(records)), v["command"])

    def version(self, v):
        vid, key = v["id"], bytes_of(v["vault_key"])
        version_key = F.hkdf(key, b"pkfs version v1")
        self.eq(vid, "version_key", version_key, bytes_of(v["version_key"]))
        body = (b"PKFSVERS\x01" + int(v["counter"]).to_bytes(8, "big") + bytes_of(v["main"])
                + bytes_of(v["head"]) + bytes([int(v["attached"])]))
        self.eq(vid, "record", body + hmac.new(version_key, body, "sha256").digest(), bytes_of(v["record"]))

    def rootkey(self, v):
        vid = v["id"]
        m, t, p = int(v["m_cost_kib"]), int(v["t_cost"]), int(v["p_cost"])
        salt, passphrase = bytes_of(v["salt"]), bytes_of(v["passphrase"])
        kek = Argon2id(salt=salt, length=32, iterations=t, lanes=p, memory_cost=m).derive(passphrase)
        self.eq(vid, "kek", kek, bytes_of(v["kek"]))
        costs = m.to_bytes(4, "big") + t.to_bytes(4, "big") + p.to_bytes(4, "big") + salt
        body = costs + seal(kek, bytes_of(v["iv"]), bytes_of(v["secret"]), b"PKFSROOT\x01\x01" + costs)
        self.eq(vid, "slot_body", body, bytes_of(v["slot_body"]))
        content = b"PKFSROOT\x02\x01\x01" + len(body).to_bytes(4, "big") + body
        self.eq(vid, "file", content + hashlib.sha256(content).digest(), bytes_of(v["file"]))
        self.eq(vid, "file_v1", b"PKFSROOT\x01\x01" + body, bytes_of(v["file_v1"]))
        for form in ("file", "file_v1"):
            _, slots = F.parse_root_key(bytes_of(v[form]))
            self.eq(vid, form + " opens", F.open_passphrase_slot(slots[0][1], passphrase),
                    bytes_of(v["secret"]))

    def keysfile(self, v):
        vid, plain = v["id"], bytes_of(v["plaintext"])
        head = b"PKFSKEYS\x01"
        self.eq(vid, "file", head + seal(bytes_of(v["keystore_key"]), bytes_of(v["iv"]), plain, head),
                bytes_of(v["file"]))

    def keysbackup(self, v):
        vid, plain, wrapped = v["id"], bytes_of(v["plaintext"]), bytes_of(v["wrapped"])
        head = b"PKFSKBAK\x01" + len(wrapped).to_bytes(2, "big") + wrapped
        self.eq(vid, "file", head + seal(bytes_of(v["file_key"]), bytes_of(v["iv"]), plain, head),
                bytes_of(v["file"]))

    def keyedslot(self, v):
        vid, proto = v["id"], int(v["protector"])
        if "key_file" in v:
            ikm = hashlib.sha256(bytes_of(v["key_file"])).digest()
        else:
            ikm = bytes_of(v["ikm"])
        want = bytes_of(v["slot_body"])
        head = want[:30]  # slot id, created, k, n, salt
        kek = F.hkdf(ikm, b"pkfs root.key slot " + bytes([proto]), salt=head[0:4] + head[14:30])
        self.eq(vid, "kek", kek, bytes_of(v["kek"]))
        aad = b"PKFSROOT\x01" + bytes([proto]) + head
        self.eq(vid, "slot_body", head + seal(kek, want[30:42], bytes_of(v["secret"]), aad), want)

    def shares(self, v):
        vid, points = v["id"], []
        node = v["node_id"][:12]
        for i in range(1, 10):
            if "line_%d" % i not in v:
                break
            line = v["line_%d" % i]
            body, _, check = line.rpartition("-")
            self.eq(vid, "check %d" % i, check, hashlib.sha256(body.encode()).digest()[:4].hex())
            parts = body.split("-")
            self.eq(vid, "fields %d" % i, parts[:3], ["pkfs", "share1", node])
            self.eq(vid, "value %d" % i, bytes.fromhex(parts[6]), bytes_of(v["value_%d" % i]))
            points.append((int(parts[5]), bytes.fromhex(parts[6])))
        k = int(points[0][0] and v["line_1"].split("-")[4])
        for a in range(len(points)):
            for b in range(a + 1, len(points)):
                pair = [points[a], points[b]][:k]
                self.eq(vid, "combine %d,%d" % (a + 1, b + 1), gf_combine(pair), bytes_of(v["master"]))

    def keychain(self, v):
        vid, rec = v["id"], json.loads(v["record"])
        keys = sorted(rec["keys"], key=lambda k: k["generation"])
        ints = lambda s: [int(x) for x in s.split()]
        self.eq(vid, "generations", [k["generation"] for k in keys], ints(v["generations"]))
        self.eq(vid, "created", [k.get("created", rec["created"]) for k in keys], ints(v["created"]))
        self.eq(vid, "newest", keys[-1]["generation"], int(v["newest"]))
        self.eq(vid, "dropped", [d["generation"] for d in rec.get("dropped", [])], ints(v["dropped"]))
        self.eq(vid, "rotate_after_ms", int(rec.get("settings", {}).get("rotate-after", "0")),
                int(v["rotate_after_ms"]))
        self.eq(vid, "round trip", json.dumps(rec, separators=(",", ":")), v["record"])

    def blob_holes(self, v):
        vid, key = v["id"], bytes_of(v["vault_key"])
        gen, file_id, salt = int(v["generation"]), bytes_of(v["file_id"]), bytes_of(v["salt"])
        plain = bytes_of(v["plaintext"])
        file_key = F.hkdf(key, b"pkfs content v1", salt=salt)
        header = b"PKFS\x02\x00" + gen.to_bytes(4, "big") + file_id + salt
        self.eq(vid, "header", header, bytes_of(v["header"]))
        count = -(-len(plain) // 4096)
        blob, run = header, 0
        for i in range(count):
            chunk = plain[i * 4096:(i + 1) * 4096]
            last = i == count - 1
            if "iv.%d" % i not in v:
                self.eq(vid, "hole %d reads as zeros" % i, chunk, bytes(4096))
                blob += bytes(4096 + 28)
                run += 1
                continue
            aad = file_id + i.to_bytes(8, "big") + (b"\x01" if last else b"\x00")
            if run:
                aad += run.to_bytes(8, "big")
            run = 0
            if "page.%d.aad" % i in v:
                self.eq(vid, "page.%d.aad" % i, aad, bytes_of(v["page.%d.aad" % i]))
            page = seal(file_key, bytes_of(v["iv.%d" % i]), chunk, aad)
            self.eq(vid, "page.%d.iv_tag" % i, page[:28], bytes_of(v["page.%d.iv_tag" % i]))
            if "page.%d.ciphertext" % i in v:
                self.eq(vid, "page.%d.ciphertext" % i, page[28:], bytes_of(v["page.%d.ciphertext" % i]))
            blob += page
        self.eq(vid, "blob_len", len(blob), int(v["blob_len"]))
        self.eq(vid, "blob_sha256", hashlib.sha256(blob).digest(), bytes_of(v["blob_sha256"]))
        self.eq(vid, "read back", F.decrypt_blob(blob, {gen: key}), plain)

    def modes(self, v):
        vid, key = v["id"], bytes_of(v["vault_key"])
        mkey = F.hkdf(key, b"pkfs modes v1")
        self.eq(vid, "modes_key", mkey, bytes_of(v["modes_key"]))
        aad = b"pkfs modes v1" + bytes_of(v["dir_iv"])
        plain = bytes_of(v["plain"])
        self.eq(vid, "file", seal(mkey, bytes_of(v["iv"]), plain, aad), bytes_of(v["file"]))
        self.eq(vid, "parsed", F.parse_mode_record(plain), {".": 0o755, "AbCd": 0o640})

    def message(self, v):
        vid, key = v["id"], bytes_of(v["vault_key"])
        history_key = F.hkdf(key, b"pkfs history v1")
        self.eq(vid, "history_key", history_key, bytes_of(v["history_key"]))
        aad = b"pkfs history v2" + bytes_of(v["tree"]) + bytes_of(v["parents"])
        self.eq(vid, "aad", aad, bytes_of(v["aad"]))
        env = seal(history_key, bytes_of(v["iv"]), bytes_of(v["plain"]), aad)
        line = base64.b64encode(env).decode()
        self.eq(vid, "line", line, v["line"])


# The journal's rules, as docs/FORMAT.md ("Change journal") states them.


def below(p, q):
    return p == q or p.startswith(q + "/")


def sidecar(p, q):
    return p == q + ".name"


def covers(rec, p):
    return below(p, rec[1]) or sidecar(p, rec[1])


def touches(rec, p):
    kind, frm, to = rec
    if kind == 5:
        return below(p, to) or sidecar(p, to)
    if frm == to:
        return below(p, to)
    return below(p, frm) or below(p, to) or sidecar(p, frm) or sidecar(p, to)


def origin(records, p):
    cur, eligible = p, len(records)
    while True:
        r = next((i for i in range(eligible - 1, -1, -1)
                  if records[i][0] == 1 and covers(records[i], cur)), None)
        m = next((i for i in range(eligible - 1, -1, -1)
                  if records[i][0] in (3, 4, 5) and (r is None or i > r) and touches(records[i], cur)),
                 None)
        if m is not None:
            kind, frm, to = records[m]
            if below(cur, to):
                cur = frm + cur[len(to):]
            elif kind == 4 and below(cur, frm):
                cur = to + cur[len(frm):]
            else:
                return "changed"
            eligible = m
            continue
        return "changed" if r is not None else cur


def command_paths(records):
    start = max(i for i, rec in enumerate(records) if rec[0] == 6)
    out = set()
    for rec in records[start + 1:]:
        if rec[0] == 1:
            out.add(rec[1])
        elif rec[0] in (3, 4):
            out.update(rec[1:])
        elif rec[0] == 5:
            out.add(rec[2])
    return sorted(out)


def main():
    doc = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "FORMAT.md")
    vectors = load(doc)
    c, blobs = Checker(), {}
    for v in vectors:
        kind = v["kind"]
        if kind == "blob":
            blobs[v["id"]] = c.blob(v)
        elif kind == "xattr-long":
            c.xattr_long(v)
        elif kind == "blob-holes":
            c.blob_holes(v)
        elif kind == "tags":
            c.tags(v, blobs)
        elif kind in ("name", "symlink", "xattr", "journal", "version", "rootkey", "message",
                      "keysfile", "keysbackup", "keyedslot", "shares", "keychain", "modes"):
            getattr(c, kind)(v)
        else:
            c.failures += 1
            print("vector %s: unknown kind %s" % (v["id"], kind), file=sys.stderr)
    print("vectors: %d recomputed, %d mismatches" % (len(vectors), c.failures))
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
