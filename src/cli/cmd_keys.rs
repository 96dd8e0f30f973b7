//! `pkfs keys get | list | config | delete-owner | restore-owner`, and the
//! key service a mount daemon starts.
//!
//! While a daemon answers on `HOME/run/keys.sock`, the commands ask it (the
//! daemon holds the home); otherwise they unlock the node here, with the
//! passphrase, and work on `HOME/keys` directly. Either way the same
//! [`Keyring`] code runs.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use parking_lot::Mutex;
use pkfs::args::{KeysCmd, MountArgs};
use pkfs::crypto::SymKey;
use pkfs::daemon::keysock::{self, Access};
use pkfs::keys::backup::{self, Backup};
use pkfs::keys::file::{deserialize_key, encode_key, to_json};
use pkfs::keys::ring::KeyHolder;
use pkfs::keys::store::Listed;
use pkfs::keys::{now_unix, Keyring, DEFAULT_OWNER};
use pkfs::store::atomic::write_atomic;
use pkfs::vault::Node;
use pkfs::Error;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::config::Config;
use super::remote::write_out;
use super::{fmt_time, unlock_owned, Out};

/// The largest answer a client reads from the key service (a backup of many keys).
const MAX_ANSWER: usize = 64 << 20;

pub fn run(cfg: &Config, cmd: KeysCmd) -> anyhow::Result<()> {
    // Files named on the command line are read before anything changes.
    let pubkey = match &cmd {
        KeysCmd::DeleteOwner {
            backup, backup_to, ..
        } => {
            if backup.exists() {
                return Err(Error::Exists(backup.display().to_string()).into());
            }
            Some(read_text(backup_to)?)
        }
        _ => None,
    };
    let restore = match &cmd {
        KeysCmd::RestoreOwner { file, backup_key } => {
            let data = std::fs::read(file).map_err(|e| Error::io(file, e))?;
            let pem = read_text(backup_key)?;
            Some(backup::open(&backup::private_key(&pem)?, &data)?)
        }
        _ => None,
    };
    let sock = keysock::socket_path(&cfg.home);
    if let Ok(stream) = pkfs::daemon::control::via_short_path(&sock, |p| UnixStream::connect(p)) {
        return through_service(cfg, cmd, stream, pubkey, restore);
    }
    local(cfg, cmd, pubkey, restore)
}

fn read_text(path: &Path) -> Result<Zeroizing<String>, Error> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
    std::str::from_utf8(&bytes)
        .map(|s| Zeroizing::new(s.to_string()))
        .map_err(|_| Error::Usage(format!("{path:?} is not a PEM text file")))
}

/// Print the `get` answer.
fn print_key(id: &str, key: &SymKey) {
    #[derive(serde::Serialize)]
    struct Printed<'a> {
        id: &'a str,
        key: &'a str,
    }
    let b64 = encode_key(key);
    let mut line = to_json(&Printed {
        id,
        key: b64.as_str(),
    });
    line.push(b'\n');
    let _ = write_out(&line);
}

fn print_list(cfg: &Config, keys: &[Listed], days: u32) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let now = now_unix();
    if out.json() {
        let v: Vec<Value> = keys
            .iter()
            .map(|l| {
                json!({"owner": l.owner, "service": l.service, "id": l.id,
                       "created": l.created, "age_seconds": now.saturating_sub(l.created),
                       "default": l.default})
            })
            .collect();
        return out.emit(&v);
    }
    out.say(format!("expiration: {days} days"));
    for l in keys {
        let age = now.saturating_sub(l.created).max(0) / 86_400;
        out.data(format!(
            "{}\t{}\t{}\t{}\t{age}d{}",
            super::shown_name(l.owner.as_bytes()),
            super::shown_name(l.service.as_bytes()),
            l.id,
            fmt_time(l.created),
            if l.default { "\tdefault" } else { "" }
        ));
    }
    Ok(())
}

fn write_backup(path: &Path, file: &[u8]) -> Result<(), Error> {
    write_atomic(path, file)
}

/// Run here: unlock the node, open its key store.
fn local(
    cfg: &Config,
    cmd: KeysCmd,
    pubkey: Option<Zeroizing<String>>,
    restore: Option<Backup>,
) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let create = matches!(
        cmd,
        KeysCmd::Get { id: None, .. }
            | KeysCmd::RestoreOwner { .. }
            | KeysCmd::Config {
                expiration_days: Some(_)
            }
    );
    if cfg.daemon_node.is_some() {
        return Err(Error::Usage("`pkfs keys` is not run by the control socket".into()).into());
    }
    let mut node = unlock_owned(cfg)?;
    node.forget_protector();
    let node = Arc::new(Mutex::new(node));
    let ring = open_ring(&mut node.lock(), create)?;
    ring.set_holder(Arc::new(NodeHolder(node.clone())));
    match cmd {
        KeysCmd::Get { service, owner, id } => {
            let owner = owner.unwrap_or_else(|| DEFAULT_OWNER.into());
            let k = ring.get(&owner, &service, id.as_deref(), now_unix())?;
            print_key(&k.id, &k.key);
        }
        KeysCmd::List { owner } => {
            let (keys, days) = ring.list(owner.as_deref())?;
            print_list(cfg, &keys, days)?;
        }
        KeysCmd::Config { expiration_days } => {
            let days = ring.expiration_days(expiration_days)?;
            print_config(&out, days)?;
        }
        KeysCmd::DeleteOwner { owner, backup, .. } => {
            let to = backup::recipient(pubkey.as_deref().map_or("", |s| s.as_str()))?;
            let b = ring.export_owner(&owner)?;
            if b.is_empty() {
                return Err(Error::NoSuchKey(format!("owner {owner:?} has no keys")).into());
            }
            // The backup is durable before anything is deleted.
            write_backup(&backup, &backup::seal(&to, &b))?;
            let gone = ring.delete_owner(&owner)?;
            print_deleted(&out, &owner, gone.len(), &backup)?;
        }
        KeysCmd::RestoreOwner { .. } => {
            let b = restore.ok_or(Error::Crypto("the backup was not read"))?;
            let owner = b.owner.clone();
            let n = ring.restore_owner(b)?;
            print_restored(&out, &owner, n)?;
        }
    }
    Ok(())
}

/// The node's vault table, where the keystore key is kept.
pub struct NodeHolder(pub Arc<Mutex<Node>>);

impl KeyHolder for NodeHolder {
    fn stage(&self, next: &SymKey) -> Result<(), Error> {
        self.0.lock().stage_keystore_key(next)
    }

    fn commit(&self) -> Result<(), Error> {
        self.0.lock().commit_keystore_key()
    }
}

/// The node's keyring; without `create`, a node that has no keystore key yet
/// gets an empty one that nothing is saved to. A re-keying that was cut after
/// the `keys` file was rewritten is finished here.
fn open_ring(node: &mut Node, create: bool) -> Result<Keyring, Error> {
    match node.keystore_key(create)? {
        Some(key) => {
            let next = node.next_keystore_key()?;
            let (ring, used_next) = Keyring::open_either(node.home(), key, next)?;
            if used_next {
                node.commit_keystore_key()?;
            }
            Ok(ring)
        }
        None => {
            let file = node.home().join(pkfs::keys::file::FILE_NAME);
            if file.exists() {
                return Err(Error::corrupt(
                    "keys",
                    "the vault table holds no keystore key for it",
                ));
            }
            Keyring::open(node.home(), SymKey::generate())
        }
    }
}

fn print_config(out: &Out, days: u32) -> anyhow::Result<()> {
    if out.json() {
        out.emit(&json!({"expiration_days": days}))
    } else {
        out.data(format!("expiration-days: {days}"));
        Ok(())
    }
}

fn print_deleted(out: &Out, owner: &str, n: usize, file: &Path) -> anyhow::Result<()> {
    if out.json() {
        return out.emit(&json!({"owner": owner, "deleted": n, "backup": file}));
    }
    out.say(format!(
        "Deleted {n} key(s) of owner {owner:?}; the backup is in {}",
        file.display()
    ));
    Ok(())
}

fn print_restored(out: &Out, owner: &str, n: usize) -> anyhow::Result<()> {
    if out.json() {
        return out.emit(&json!({"owner": owner, "restored": n}));
    }
    out.say(format!("Restored {n} key(s) of owner {owner:?}"));
    Ok(())
}

// ---------------------------------------------------------------------------
// Through a running daemon's key service.

/// Send one request line, read one answer line.
fn call(stream: &mut UnixStream, req: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let io = |e| Error::io("keys.sock", e);
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(io)?;
    // A service that refuses the caller answers and closes before reading:
    // a failed write still leaves its answer to read.
    let sent = stream.write_all(req).and_then(|()| stream.write_all(b"\n"));
    let mut answer = Zeroizing::new(Vec::with_capacity(64 * 1024));
    let mut chunk = Zeroizing::new([0u8; 8192]);
    loop {
        let n = match stream.read(&mut chunk[..]) {
            Ok(n) => n,
            Err(e) => return Err(io(sent.err().unwrap_or(e))),
        };
        if n == 0 {
            if answer.is_empty() {
                if let Err(e) = sent {
                    return Err(io(e));
                }
            }
            break;
        }
        if answer.len() + n > answer.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(2 * (answer.len() + n)));
            bigger.extend_from_slice(&answer);
            answer = bigger;
        }
        answer.extend_from_slice(&chunk[..n]);
        if answer.last() == Some(&b'\n') {
            break;
        }
        if answer.len() > MAX_ANSWER {
            return Err(Error::corrupt("keys.sock", "an answer over 64 MiB"));
        }
    }
    // An error answer becomes the matching error.
    if let Ok(e) = serde_json::from_slice::<ErrorAnswer>(&answer) {
        if !e.ok {
            return Err(match e.error.as_str() {
                "sealed" => Error::sealed_keys(),
                "no_such_key" => Error::NoSuchKey(e.message),
                "conflict" => Error::Exists(e.message),
                "bad_request" | "denied" => Error::Usage(e.message),
                _ => Error::Unsafe(format!("the key service: {}", e.message)),
            });
        }
    }
    Ok(answer)
}

#[derive(Deserialize)]
struct ErrorAnswer {
    ok: bool,
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct KeyAnswer {
    id: String,
    #[serde(deserialize_with = "deserialize_key")]
    key: SymKey,
}

fn parse<T: for<'a> Deserialize<'a>>(answer: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(answer)
        .map_err(|e| Error::corrupt("keys.sock", format!("an unexpected answer: {e}")))
}

fn through_service(
    cfg: &Config,
    cmd: KeysCmd,
    mut s: UnixStream,
    pubkey: Option<Zeroizing<String>>,
    restore: Option<Backup>,
) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    match cmd {
        KeysCmd::Get { service, owner, id } => {
            let req = json!({"op": "get", "service": service, "owner": owner, "id": id});
            let a: KeyAnswer = parse(&call(&mut s, strip_nulls(req).to_string().as_bytes())?)?;
            print_key(&a.id, &a.key);
        }
        KeysCmd::List { owner } => {
            let req = json!({"op": "list", "owner": owner});
            let v: Value = parse(&call(&mut s, strip_nulls(req).to_string().as_bytes())?)?;
            let keys: Vec<Listed> = v["keys"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|k| Listed {
                            owner: k["owner"].as_str().unwrap_or("").into(),
                            service: k["service"].as_str().unwrap_or("").into(),
                            id: k["id"].as_str().unwrap_or("").into(),
                            created: k["created"].as_i64().unwrap_or(0),
                            default: k["default"].as_bool().unwrap_or(false),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let days = v["expiration_days"].as_u64().unwrap_or(0) as u32;
            print_list(cfg, &keys, days)?;
        }
        KeysCmd::Config { expiration_days } => {
            let req = json!({"op": "config", "expiration_days": expiration_days});
            let v: Value = parse(&call(&mut s, strip_nulls(req).to_string().as_bytes())?)?;
            print_config(&out, v["expiration_days"].as_u64().unwrap_or(0) as u32)?;
        }
        KeysCmd::DeleteOwner { owner, backup, .. } => {
            let pem = pubkey.as_deref().map_or("", |p| p.as_str());
            backup::recipient(pem)?;
            // Nothing is deleted unless the backup's directory takes files.
            let dir = backup
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            tempfile::tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
            let req = json!({"op": "delete_owner", "owner": owner, "backup_to": pem});
            let v: Value = parse(&call(&mut s, req.to_string().as_bytes())?)?;
            let n = v["deleted"].as_u64().unwrap_or(0) as usize;
            let file = STANDARD
                .decode(v["backup"].as_str().unwrap_or(""))
                .map_err(|_| Error::corrupt("keys.sock", "the backup is not Base64"))?;
            if n == 0 {
                return Err(Error::NoSuchKey(format!("owner {owner:?} has no keys")).into());
            }
            if let Err(e) = write_backup(&backup, &file) {
                // The keys are gone from the node: the backup (encrypted to
                // PUBKEY) must not be lost with them.
                let _ = write_out(format!("{}\n", STANDARD.encode(&file)).as_bytes());
                return Err(anyhow::Error::new(e).context(
                    "the keys were deleted but the backup could not be written; \
                     it was printed to standard output (Base64) instead",
                ));
            }
            print_deleted(&out, &owner, n, &backup)?;
        }
        KeysCmd::RestoreOwner { .. } => {
            let b = restore.ok_or(Error::Crypto("the backup was not read"))?;
            #[derive(serde::Serialize)]
            struct Req<'a> {
                op: &'a str,
                backup: &'a Backup,
            }
            let req = to_json(&Req {
                op: "restore_owner",
                backup: &b,
            });
            let v: Value = parse(&call(&mut s, &req)?)?;
            print_restored(&out, &b.owner, v["restored"].as_u64().unwrap_or(0) as usize)?;
        }
    }
    Ok(())
}

fn strip_nulls(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| !x.is_null());
    }
    v
}

// ---------------------------------------------------------------------------
// The daemon's side.

/// Who may use a mount's key service, and where it listens besides
/// `HOME/run/keys.sock`.
#[derive(Debug, Clone, Default)]
pub struct KeysPlan {
    pub group: Option<u32>,
    pub extra_socket: Option<PathBuf>,
}

pub fn plan(a: &MountArgs) -> Result<KeysPlan, Error> {
    let group = match &a.keys_group {
        Some(g) => Some(
            keysock::group_id(g).map_err(|e| Error::Usage(format!("--keys-group {g:?}: {e}")))?,
        ),
        None => None,
    };
    let extra_socket = match &a.keys_socket {
        Some(p) => Some(std::path::absolute(p).map_err(|e| Error::io(p, e))?),
        None => None,
    };
    Ok(KeysPlan {
        group,
        extra_socket,
    })
}

/// The daemon's keyring, open (the node is unlocked). Sealing the node seals
/// it ([`Keyring::seal`]); unsealing opens it again with
/// `node.keystore_key(true)` ([`Keyring::unseal`]). A store that cannot be
/// opened leaves it sealed, and says why in the log.
pub fn daemon_keyring(node: &mut Node) -> Arc<Keyring> {
    match open_ring(node, true) {
        Ok(ring) => Arc::new(ring),
        Err(e) => {
            tracing::warn!("the key service stays sealed: {e}");
            Arc::new(Keyring::sealed(node.home()))
        }
    }
}

/// Once the node is the mount's: deletes replace the keystore key in it.
pub fn hold(ring: &Keyring, node: Arc<Mutex<Node>>) {
    ring.set_holder(Arc::new(NodeHolder(node)));
}

/// Keep the keyring in step with a sealable mount: sealed when the gate
/// closes, opened again (and holding the new node) when it opens.
pub fn follow_gate(gate: &pkfs::fs::gate::Gate, ring: Arc<Keyring>) {
    gate.on_change(Box::new(move |core| match core {
        None => ring.seal(),
        Some(core) => {
            let opened = unseal_ring(&ring, &mut core.node.lock());
            if let Err(e) = opened {
                tracing::warn!("the key service stays sealed: {e}");
            }
            hold(&ring, core.node.clone());
        }
    }));
}

/// [`open_ring`] for a keyring that exists already (a node unsealed again).
fn unseal_ring(ring: &Keyring, node: &mut Node) -> Result<(), Error> {
    match node.keystore_key(true)? {
        Some(key) => {
            let next = node.next_keystore_key()?;
            if ring.unseal_either(key, next)? {
                node.commit_keystore_key()?;
            }
            Ok(())
        }
        None => {
            let file = node.home().join(pkfs::keys::file::FILE_NAME);
            if file.exists() {
                return Err(Error::corrupt(
                    "keys",
                    "the vault table holds no keystore key for it",
                ));
            }
            Ok(ring.unseal(SymKey::generate())?)
        }
    }
}

/// A running key service: its threads and sockets.
pub struct KeyService {
    threads: Vec<JoinHandle<()>>,
    sockets: Vec<PathBuf>,
}

/// Bind `HOME/run/keys.sock` (and the extra socket) and serve until `stop`.
pub fn start(
    home: &Path,
    plan: &KeysPlan,
    ring: Arc<Keyring>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<KeyService> {
    let access = Access {
        owner_uid: nix_euid(),
        group: plan.group,
    };
    let mut paths = vec![keysock::socket_path(home)];
    paths.extend(plan.extra_socket.clone());
    let mut svc = KeyService {
        threads: Vec::new(),
        sockets: Vec::new(),
    };
    for p in paths {
        let l = keysock::bind(&p, plan.group)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
        svc.sockets.push(p);
        let (ring, stop) = (ring.clone(), stop.clone());
        svc.threads.push(std::thread::spawn(move || {
            keysock::serve(l, ring, access, stop)
        }));
    }
    Ok(svc)
}

impl KeyService {
    /// After `stop` was set: wait for the threads, remove the sockets.
    pub fn finish(self) {
        for p in &self.sockets {
            let _ = std::fs::remove_file(p);
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn nix_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
