//! The key service of a mount: `HOME/run/keys.sock`, its JSON-lines protocol
//! (docs/KEYS.md), its access rules, and `pkfs keys` going through it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::mount::Mounted;
use common::users::as_nobody;
use common::{find_plaintext, mode_of, ExitCode, Node, BIN};
use serde_json::{json, Value};

fn sock(m: &Mounted) -> PathBuf {
    m.node.home.join("run").join("keys.sock")
}

struct Client {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Client {
    fn new(path: &Path) -> Client {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Value {
        self.w.write_all(bytes).unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        assert!(line.ends_with('\n'), "{line:?}");
        serde_json::from_str(&line).unwrap()
    }

    fn call(&mut self, req: Value) -> Value {
        self.send_raw(format!("{req}\n").as_bytes())
    }
}

fn key_of(v: &Value) -> Vec<u8> {
    assert_eq!(v["ok"], true, "{v}");
    let k = STANDARD.decode(v["key"].as_str().unwrap()).unwrap();
    assert_eq!(k.len(), 32);
    k
}

#[test]
fn fifty_concurrent_clients_get_one_default_key() {
    let m = Mounted::new();
    let path = sock(&m);
    assert_eq!(mode_of(&path) & 0o777, 0o600);
    // A slow client holding a half-sent line must not hold anyone up.
    let mut slow = UnixStream::connect(&path).unwrap();
    slow.write_all(br#"{"op":"get","serv"#).unwrap();
    let start = Instant::now();
    let answers: Vec<Value> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..50)
            .map(|i| {
                let path = path.clone();
                sc.spawn(move || {
                    let mut c = Client::new(&path);
                    let a = c.call(json!({"op": "get", "service": "db", "owner": "o"}));
                    // A second request on the same connection.
                    let b = c.call(json!({"op": "get", "service": format!("own-{i}")}));
                    assert_eq!(b["ok"], true, "{b}");
                    a
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(start.elapsed() < Duration::from_secs(20));
    let first = &answers[0];
    let key = key_of(first);
    for a in &answers {
        assert_eq!(a["id"], first["id"]);
        assert_eq!(key_of(a), key);
    }
    // Exactly one key was made for (o, db); 50 more for the own-i services.
    let mut c = Client::new(&path);
    let list = c.call(json!({"op": "list", "owner": "o"}));
    assert_eq!(list["keys"].as_array().unwrap().len(), 1, "{list}");
    assert!(!list.to_string().contains(first["key"].as_str().unwrap()));
    let all = c.call(json!({"op": "list"}));
    assert_eq!(all["keys"].as_array().unwrap().len(), 51);
    // The slow client finishes its line and is answered too.
    slow.write_all(b"ice\":\"db\",\"owner\":\"o\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(slow).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["id"], first["id"]);
    // The CLI goes through the service (no passphrase needed) and agrees.
    let out = m
        .node
        .cmd()
        .no_passfile()
        .args(["keys", "get", "db", "--owner", "o"])
        .run()
        .success();
    let printed: Value = serde_json::from_str(&out.out()).unwrap();
    assert_eq!(printed["id"], first["id"]);
    assert_eq!(printed["key"], first["key"]);
    // Every answer was logged with the caller's uid; no key ever was.
    let log = m.log();
    assert!(log.contains("keys.sock: uid 0: \"get\""), "{log}");
    let b64 = first["key"].as_str().unwrap();
    assert!(!log.contains(b64));
    let mut m = m;
    m.umount();
    let found = find_plaintext(&m.node.home, &[&key]);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn malformed_and_huge_requests_are_answered_and_the_service_lives_on() {
    let m = Mounted::new();
    let path = sock(&m);
    let mut c = Client::new(&path);
    for bad in [
        &b"not json\n"[..],
        b"{}\n",
        b"[1,2]\n",
        b"{\"op\":\"get\"}\n",
        b"{\"op\":\"get\",\"service\":\"s\",\"ID\":\"x\"}\n",
        b"{\"op\":\"launch\"}\n",
        b"\xff\xfe\n",
        b"{\"op\":\"get\",\"service\":\"a\\u0000b\"}\n",
    ] {
        let v = c.send_raw(bad);
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["error"], "bad_request", "{v}");
    }
    let v = c.call(json!({"op": "get", "service": "s", "id": "missing"}));
    assert_eq!(v["error"], "no_such_key");
    // A line over the limit: one answer, then the connection is closed.
    let mut big = Client::new(&path);
    let huge = vec![b'x'; 2 << 20];
    let _ = big.w.write_all(&huge);
    let mut line = String::new();
    big.r.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"], "too_large");
    let mut rest = Vec::new();
    let _ = big.r.read_to_end(&mut rest);
    assert!(rest.is_empty());
    // Meanwhile and after, everyone else is served.
    let v = c.call(json!({"op": "get", "service": "s"}));
    key_of(&v);
    let mut fresh = Client::new(&path);
    assert_eq!(
        fresh.call(json!({"op": "get", "service": "s"}))["id"],
        v["id"]
    );
    // delete_owner needs a recipient; nothing is deleted without one.
    let d = fresh.call(json!({"op": "delete_owner", "owner": "default"}));
    assert_eq!(d["error"], "bad_request");
    assert_eq!(
        fresh.call(json!({"op": "get", "service": "s", "id": v["id"]}))["key"],
        v["key"]
    );
}

#[test]
fn delete_and_restore_through_the_service() {
    let m = Mounted::new();
    let path = sock(&m);
    let mut c = Client::new(&path);
    let a = c.call(json!({"op": "get", "service": "s", "owner": "o"}));
    let kp = pkfs::crypto::rsa::RootKeypair::from_pkcs8_pem(&common::root_key_pem(1)).unwrap();
    let d = c.call(json!({"op": "delete_owner", "owner": "o",
                          "backup_to": kp.public().to_pem()}));
    assert_eq!(d["deleted"], 1, "{d}");
    let file = STANDARD.decode(d["backup"].as_str().unwrap()).unwrap();
    let gone = c.call(json!({"op": "get", "service": "s", "owner": "o", "id": a["id"]}));
    assert_eq!(gone["error"], "no_such_key");
    let backup = pkfs::keys::backup::open(&kp, &file).unwrap();
    let plain = String::from_utf8(pkfs::keys::file::to_json(&backup).to_vec()).unwrap();
    let r = c.send_raw(format!("{{\"op\":\"restore_owner\",\"backup\":{plain}}}\n").as_bytes());
    assert_eq!(r["restored"], 1, "{r}");
    let back = c.call(json!({"op": "get", "service": "s", "owner": "o", "id": a["id"]}));
    assert_eq!(back["key"], a["key"]);
    // The CLI's delete-owner and restore-owner go through the service too.
    let n = &m.node;
    let public = n.scratch_file("r.pub", kp.public().to_pem().as_bytes());
    let private = n.scratch_file("r.key", common::root_key_pem(1).as_bytes());
    let bak = n.scratch().join("o.bak");
    n.cmd()
        .no_passfile()
        .args(["keys", "delete-owner", "o", "--backup"])
        .arg(&bak)
        .arg("--backup-to")
        .arg(&public)
        .run()
        .success();
    n.cmd()
        .no_passfile()
        .args(["keys", "get", "s", "--owner", "o", "--id"])
        .arg(a["id"].as_str().unwrap())
        .run()
        .failure(ExitCode::NoSuchKey);
    n.cmd()
        .no_passfile()
        .args(["keys", "restore-owner"])
        .arg(&bak)
        .arg("--backup-key")
        .arg(&private)
        .run()
        .success();
    let out = n
        .cmd()
        .no_passfile()
        .args(["keys", "get", "s", "--owner", "o"])
        .run()
        .success();
    let v: Value = serde_json::from_str(&out.out()).unwrap();
    assert_eq!(v["key"], a["key"]);
    // The daemon replaced the keystore key in the vault table at each
    // delete: unmounted, the node opens the store, with the same keys.
    let mut m = m;
    m.umount();
    let out = m.node.ok([
        "keys",
        "get",
        "s",
        "--owner",
        "o",
        "--id",
        a["id"].as_str().unwrap(),
    ]);
    let v: Value = serde_json::from_str(&out.out()).unwrap();
    assert_eq!(v["key"], a["key"]);
}

/// `pkfs --home FAKE keys get s` run as nobody, where FAKE/run/keys.sock is
/// the mount's extra socket.
fn nobody_get(fake_home: &Path) -> std::process::Output {
    let mut c = Command::new(BIN);
    common::clean_env(&mut c);
    c.arg("--home")
        .arg(fake_home)
        .args(["keys", "get", "s"])
        .env("HOME", "/nonexistent")
        .stdin(std::process::Stdio::null());
    as_nobody(&mut c);
    c.output().unwrap()
}

fn shared_dir(n: &Node) -> PathBuf {
    let fake = n.scratch().join("shared");
    std::fs::create_dir_all(fake.join("run")).unwrap();
    for d in [n.scratch().to_path_buf(), fake.clone(), fake.join("run")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    fake
}

#[test]
fn keys_group_lets_a_group_in_and_no_one_else() {
    // With the group: the socket is 0660 and the group's; nobody is let in.
    let n = Node::with_vault();
    let fake = shared_dir(&n);
    let extra = fake.join("run").join("keys.sock");
    let mut m = Mounted::unmounted(n);
    m.mount(&[
        "--keys-group",
        "nogroup",
        "--keys-socket",
        extra.to_str().unwrap(),
    ]);
    assert_eq!(mode_of(&extra) & 0o777, 0o660);
    let out = nobody_get(&fake);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    key_of(&json!({"ok": true, "key": v["key"]}));
    assert!(
        m.log().contains("keys.sock: uid 65534: \"get\""),
        "{}",
        m.log()
    );
    m.umount();
    assert!(!extra.exists(), "the extra socket is removed at unmount");

    // Without the group: 0600, and even a socket opened up by hand refuses
    // the peer (SO_PEERCRED).
    m.mount(&["--keys-socket", extra.to_str().unwrap()]);
    assert_eq!(mode_of(&extra) & 0o777, 0o600);
    let out = nobody_get(&fake);
    assert!(!out.status.success());
    std::fs::set_permissions(&extra, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = nobody_get(&fake);
    assert_eq!(out.status.code(), Some(ExitCode::Usage as i32));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied: uid 65534"), "{err}");
    assert!(m.log().contains("uid 65534: refused"), "{}", m.log());
}

#[test]
fn a_key_store_that_cannot_be_opened_answers_sealed_at_once() {
    let n = Node::init();
    n.ok(["keys", "get", "s"]);
    n.ok(["vault", "create", "v"]);
    common::flip_byte(&n.home.join("keys"), 30);
    let mut m = Mounted::unmounted(n);
    m.mount(&[]);
    let mut c = Client::new(&sock(&m));
    let start = Instant::now();
    for req in [
        json!({"op": "get", "service": "s"}),
        json!({"op": "get", "service": "s", "id": "x"}),
        json!({"op": "list"}),
        json!({"op": "delete_owner", "owner": "o", "backup_to": "x"}),
        json!({"op": "restore_owner", "backup": {"owner": "o", "services": {}}}),
        json!({"op": "config"}),
    ] {
        let v = c.call(req.clone());
        assert_eq!(v["error"], "sealed", "{req}: {v}");
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    m.node
        .cmd()
        .no_passfile()
        .args(["keys", "get", "s"])
        .run()
        .failure(ExitCode::Sealed);
    m.umount();
}
