"""The byte layouts, string constants and keys of docs/FORMAT.md, for the
independent reader (pkfs_reader.py): conventions, the passphrase, root.key,
the metadata file, content blobs, names, symlink targets, extended
attributes and modes. Only the `cryptography` package; no pkfs code.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import stat

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF



class FormatError(Exception):
    """The vault does not follow the format (or a check failed)."""


# --- Conventions ---------------------------------------------------------

B64URL = re.compile(rb"^[A-Za-z0-9_-]*$")
B64STD = re.compile(rb"^[A-Za-z0-9+/]*={0,2}$")


def u32(b):
    return int.from_bytes(b, "big")


def path_text_decode(text):
    """Path text (FORMAT.md, "Path text") back to the name's bytes: `\\\\` is
    a backslash, `\\xHH` (either case) the byte HH, any other backslash is
    literal, and everything else is UTF-8."""
    out, i = bytearray(), 0
    while i < len(text):
        c = text[i]
        if c == "\\" and text[i + 1:i + 2] == "\\":
            out += b"\\"
            i += 2
        elif c == "\\" and text[i + 1:i + 2] in ("x", "X") and len(text) >= i + 4 \
                and all(h in "0123456789abcdefABCDEF" for h in text[i + 2:i + 4]):
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            out += c.encode("utf-8")
            i += 1
    return bytes(out)


def b64url_decode(s):
    """base64url without `=` padding (RFC 4648 section 5), strictly."""
    if isinstance(s, str):
        s = s.encode("ascii")
    if not B64URL.match(s) or len(s) % 4 == 1:
        raise FormatError("not base64url without padding: %r" % s[:40])
    out = base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))
    if b64url_encode(out) != s:
        raise FormatError("non-canonical base64url")
    return out


def b64url_encode(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def b64std_decode(s):
    """Standard alphabet, with `=` padding."""
    if isinstance(s, str):
        s = s.encode("ascii")
    if not B64STD.match(s) or len(s) % 4 != 0:
        raise FormatError("not padded standard base64")
    return base64.b64decode(s, validate=True)


def hkdf(ikm, info, length=32, salt=None):
    """HKDF-SHA256; no salt means 32 zero bytes (the RFC's default)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def gcm_open(key, iv, tag, ct, aad):
    """AES-256-GCM; pkfs stores iv | tag | ciphertext."""
    try:
        return AESGCM(key).decrypt(iv, ct + tag, aad)
    except InvalidTag:
        raise FormatError("GCM tag does not verify") from None


def envelope_open(key, env, aad):
    """iv(12) | tag(16) | ciphertext."""
    if len(env) < 28:
        raise FormatError("envelope shorter than iv and tag")
    return gcm_open(key, env[:12], env[12:28], env[28:], aad)


# --- Passphrase and root.key --------------------------------------------

MAX_PASSPHRASE = 2048


def read_passphrase(path):
    """The first line of the file, its `\\n` and one `\\r` before it dropped;
    the bytes as they are (no character set is imposed)."""
    with open(path, "rb") as f:
        data = f.read(MAX_PASSPHRASE + 2)
    line = data.split(b"\n", 1)[0]
    if line.endswith(b"\r"):
        line = line[:-1]
    if not 1 <= len(line) <= MAX_PASSPHRASE:
        raise FormatError("passphrase of %d bytes" % len(line))
    return line


ROOT_MAGIC = b"PKFSROOT"


def parse_root_key(data):
    """Returns (version, [(protector id, body)])."""
    if len(data) < 10 or data[:8] != ROOT_MAGIC:
        raise FormatError("root.key: bad magic")
    version = data[8]
    if version == 1:
        return 1, [(data[9], data[10:])]
    if version != 2:
        raise FormatError("root.key: version %d" % version)
    if len(data) < 10 + 32:
        raise FormatError("root.key: truncated")
    content, digest = data[:-32], data[-32:]
    if hashlib.sha256(content).digest() != digest:
        raise FormatError("root.key: digest does not match")
    n = content[9]
    if not 1 <= n <= 32:
        raise FormatError("root.key: %d slots" % n)
    slots, pos = [], 10
    for _ in range(n):
        if pos + 5 > len(content):
            raise FormatError("root.key: truncated slot")
        pid, length = content[pos], u32(content[pos + 1:pos + 5])
        if length > 65536 or pos + 5 + length > len(content):
            raise FormatError("root.key: slot runs past the digest")
        slots.append((pid, content[pos + 5:pos + 5 + length]))
        pos += 5 + length
    if pos != len(content):
        raise FormatError("root.key: bytes after the last slot")
    return 2, slots


def open_passphrase_slot(body, passphrase):
    """Protector id 1: Argon2id KEK, AES-256-GCM of the PKCS#8 DER."""
    if len(body) < 56:
        raise FormatError("passphrase slot too short")
    m, t, p = u32(body[0:4]), u32(body[4:8]), u32(body[8:12])
    if not (8 <= m <= 4 * 1024 * 1024 and 1 <= t <= 64 and 1 <= p <= 16):
        raise FormatError("implausible Argon2id costs")
    salt = body[12:28]
    kek = Argon2id(salt=salt, length=32, iterations=t, lanes=p, memory_cost=m).derive(passphrase)
    aad = ROOT_MAGIC + b"\x01" + b"\x01" + body[:28]
    return gcm_open(kek, body[28:40], body[40:56], body[56:], aad)


def open_root_key(home, passphrase):
    with open(os.path.join(home, "root.key"), "rb") as f:
        version, slots = parse_root_key(f.read())
    last = None
    for pid, body in slots:
        if pid != 1:
            continue
        try:
            der = open_passphrase_slot(body, passphrase)
        except FormatError as e:
            last = e
            continue
        key = serialization.load_der_private_key(der, password=None)
        return der, key, version
    raise FormatError("no slot opens with this passphrase: %s" % last)


# --- Metadata ------------------------------------------------------------

META_MAGIC = b"PKFSMETA"
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def read_metadata(home, der, private_key):
    with open(os.path.join(home, "metadata"), "rb") as f:
        data = f.read()
    if data[:8] != META_MAGIC or len(data) < 11 + 28 + 32:
        raise FormatError("metadata: bad magic or too short")
    if data[8] != 2:
        raise FormatError("metadata: version %d" % data[8])
    mac_key = hkdf(der, b"pkfs metadata mac v1")
    if not hmac.compare_digest(hmac.new(mac_key, data[:-32], "sha256").digest(), data[-32:]):
        raise FormatError("metadata: HMAC does not verify")
    n = int.from_bytes(data[9:11], "big")
    wrapped = data[11:11 + n]
    meta_key = private_key.decrypt(wrapped, OAEP)
    body = data[11 + n:-32]
    plain = gcm_open(meta_key, body[:12], body[12:28], body[28:], data[:11 + n])
    return json.loads(plain.decode("utf-8"))


def vault_keys(table, name, private_key):
    """(vault id, {generation: 32-byte key})."""
    for v in table["vaults"]:
        if v["name"] == name:
            keys = {}
            for k in v["keys"]:
                key = private_key.decrypt(b64std_decode(k["wrapped"]), OAEP)
                if len(key) != 32:
                    raise FormatError("vault key of %d bytes" % len(key))
                keys[int(k["generation"])] = key
            if 0 not in keys:
                raise FormatError("vault has no key of generation 0")
            return v["id"], keys
    raise FormatError("no vault named %r" % name)


# --- Content blobs ---------------------------------------------------------

BLOB_MAGIC = b"PKFS"
HEADER_LEN = 58
PAGE = 4096
PAGE_OVERHEAD = 28


def blob_plain_len(n):
    """The inverse size rule of version 1 (section Sizes)."""
    if n == 0:
        return 0
    if n <= HEADER_LEN:
        raise FormatError("blob of %d bytes: no page" % n)
    q, r = divmod(n - HEADER_LEN, PAGE + PAGE_OVERHEAD)
    if r == 0:
        return q * PAGE
    if r <= PAGE_OVERHEAD:
        raise FormatError("last page holds no data byte")
    return q * PAGE + r - PAGE_OVERHEAD


def decrypt_blob(blob, keys):
    """The plaintext of one blob, every page authenticated."""
    if len(blob) == 0:
        return b""
    if len(blob) < HEADER_LEN or blob[:4] != BLOB_MAGIC:
        raise FormatError("not a blob")
    version = blob[4]
    if version in (1, 2):
        return decrypt_blob_v1(blob, keys, holes=version == 2)
    raise FormatError("blob version %d" % version)


def decrypt_blob_v1(blob, keys, holes=False):
    """Versions 1 and 2: in version 2 a full-size all-zero page slot is a hole,
    and the sealed page after a run of h holes has h (u64 BE) added to its AAD."""
    size = blob_plain_len(len(blob))
    if blob[5] != 0:
        raise FormatError("blob flags %02x" % blob[5])
    generation = u32(blob[6:10])
    file_id, salt = blob[10:26], blob[26:58]
    if generation not in keys:
        raise FormatError("key generation %d not in the keychain" % generation)
    file_key = hkdf(keys[generation], b"pkfs content v1", salt=salt)
    count = -(-size // PAGE)
    out, run = bytearray(), 0
    for i in range(count):
        n = min(PAGE, size - PAGE * i)
        off = HEADER_LEN + i * (PAGE + PAGE_OVERHEAD)
        page = blob[off:off + PAGE_OVERHEAD + n]
        last = i == count - 1
        if holes and not last and page == bytes(len(page)):
            run += 1
            out += bytes(PAGE)
            continue
        aad = file_id + i.to_bytes(8, "big") + (b"\x01" if last else b"\x00")
        if run:
            aad += run.to_bytes(8, "big")
        run = 0
        out += gcm_open(file_key, page[:12], page[12:28], page[28:], aad)
    return bytes(out)


def blob_tags(blob):
    """(header, [tag of each page]) of a version-1 blob."""
    size = blob_plain_len(len(blob))
    count = -(-size // PAGE)
    tags = []
    for i in range(count):
        off = HEADER_LEN + i * (PAGE + PAGE_OVERHEAD)
        tags.append(blob[off + 12:off + 28])
    return blob[:HEADER_LEN], tags


# --- Names -------------------------------------------------------------------


class Names:
    def __init__(self, key0):
        self.siv = AESSIV(hkdf(key0, b"pkfs names v1", length=64))

    def decrypt(self, encoded, ad):
        sealed = b64url_decode(encoded)
        try:
            padded = self.siv.decrypt(sealed, [ad])
        except InvalidTag:
            raise FormatError("name does not authenticate") from None
        if len(padded) == 0 or len(padded) % 16:
            raise FormatError("padded name of %d bytes" % len(padded))
        k = padded[-1]
        if not 1 <= k <= 16 or padded[-k:] != bytes([k]) * k:
            raise FormatError("bad name padding")
        return padded[:-k]

    def encrypt(self, name, ad):
        k = 16 - len(name) % 16
        return b64url_encode(self.siv.encrypt(name + bytes([k]) * k, [ad]))


LONG_ENTRY = re.compile(rb"^\.L\.[A-Za-z0-9_-]{43}$")
LONG_SIDECAR = re.compile(rb"^\.L\.[A-Za-z0-9_-]{43}\.name$")
DIRECT = re.compile(rb"^[A-Za-z0-9_-]+$")


def valid_plain_name(n):
    return 1 <= len(n) <= 255 and n not in (b".", b"..") and b"/" not in n and b"\0" not in n


def decode_entries(names, diriv, entry_names, read_sidecar):
    """Map each listed entry (bytes) to its plaintext name; sidecars and
    `.diriv` are consumed, the mode record `.pkfs-modes` is not a name, and
    anything else foreign is an error."""
    out = {}
    for e in entry_names:
        if e in (b".diriv", b".pkfs-modes") or LONG_SIDECAR.match(e):
            continue
        if e.startswith(b".tmp-"):
            continue  # a leftover of an atomic write
        if LONG_ENTRY.match(e):
            encoded = read_sidecar(e + b".name")
            want = b".L." + b64url_encode(hashlib.sha256(encoded).digest())
            if want != e:
                raise FormatError("long-name sidecar does not match %r" % e)
            if len(encoded) <= 255:
                raise FormatError("a long entry for a short name")
        elif DIRECT.match(e):
            encoded = e
        else:
            raise FormatError("foreign entry %r" % e)
        plain = names.decrypt(encoded, diriv)
        if not valid_plain_name(plain):
            raise FormatError("invalid plaintext name %r" % plain)
        if plain in out.values():
            raise FormatError("two entries decrypt to %r" % plain)
        out[e] = plain
    return out


# --- Symlinks, extended attributes, modes --------------------------------------

LINK_INFO = b"pkfs symlink v1"
XATTR_INFO = b"pkfs xattr v1"
XATTR_PREFIX = b"user.pkfs."
XATTR_AD = b"\xff" * 16
MODE_XATTR = b"user.pkfs-mode"


class Links:
    def __init__(self, key0, names):
        self.link_key = hkdf(key0, LINK_INFO)
        self.xattr_key = hkdf(key0, XATTR_INFO)
        self.names = names

    def target(self, disk):
        return envelope_open(self.link_key, b64url_decode(disk), LINK_INFO)

    def xattrs(self, raw):
        """raw: {backing name: backing value} -> {plaintext name: value}.
        Backing names outside `user.pkfs.` are not the vault's."""
        out = {}
        for name, value in raw.items():
            if not name.startswith(XATTR_PREFIX):
                continue
            if name.startswith(XATTR_PREFIX + b"l."):
                # Long form: len(E) u16 BE | E | sealed value; the name is
                # the hash of E.
                n = int.from_bytes(value[:2], "big")
                enc = value[2:2 + n]
                if len(enc) != n or XATTR_PREFIX + b"l." + b64url_encode(hashlib.sha256(enc).digest()) != name:
                    raise FormatError("long xattr %r does not match its name" % name)
                plain = self.names.decrypt(enc, XATTR_AD)
                value = value[2 + n:]
            else:
                plain = self.names.decrypt(name[len(XATTR_PREFIX):], XATTR_AD)
            if not plain.startswith(b"user.") or len(plain) == len(b"user."):
                raise FormatError("xattr name %r outside user." % plain)
            out[plain] = envelope_open(self.xattr_key, value, name)
        return out


def shown_mode(st_mode, raw_xattrs):
    """The mode the mount shows (section Modes)."""
    m = st_mode & 0o7777
    if (stat.S_ISREG(st_mode) or stat.S_ISDIR(st_mode)) and m & 0o1000:
        v = raw_xattrs.get(MODE_XATTR)
        if v is not None and re.fullmatch(rb"[0-7]{1,4}", v):
            return int(v, 8)
    return m


def raw_xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n.encode(): os.getxattr(path, n, follow_symlinks=False) for n in names}


def special_kind(m):
    if stat.S_ISFIFO(m):
        return "fifo"
    if stat.S_ISSOCK(m):
        return "socket"
    if stat.S_ISCHR(m):
        return "char"
    if stat.S_ISBLK(m):
        return "block"
    raise FormatError("unknown file type %o" % m)


def parse_mode_record(plain):
    """The entries of a mode record's plaintext: {backing name: mode}."""
    if not plain or plain[0] != 1:
        raise FormatError("mode record version")
    out, i, prev = {}, 1, None
    while i < len(plain):
        n = plain[i]
        name = plain[i + 1:i + 1 + n]
        if n == 0 or len(name) != n or i + 3 + n > len(plain):
            raise FormatError("mode record entry")
        mode = int.from_bytes(plain[i + 1 + n:i + 3 + n], "big")
        if mode > 0o7777 or (prev is not None and name <= prev):
            raise FormatError("mode record entry")
        out[name.decode("ascii")] = mode
        prev, i = name, i + 3 + n
    return out


def open_mode_record(vault_key0, dir_iv, data):
    """Decrypt and parse a directory's `.pkfs-modes`."""
    key = hkdf(vault_key0, b"pkfs modes v1")
    plain = gcm_open(key, data[:12], data[12:28], data[28:], b"pkfs modes v1" + dir_iv)
    return parse_mode_record(plain)
