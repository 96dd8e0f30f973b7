//! The JSON-lines protocol of `keys.sock` (documented in `docs/KEYS.md`): one
//! request object per line, one answer object per line, in order.
//!
//! A request is parsed into [`Request`] (unknown fields are refused, so a
//! misspelt `id` never silently yields the default key), checked, and run
//! against the [`Keyring`]. Every answer has `"ok"`; a failure has `"error"`
//! (a stable code) and `"message"` (for people). Answers carrying a key are
//! built in zeroizing buffers.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::keys::backup::{self, Backup};
use crate::keys::file::{encode_key, to_json};
use crate::keys::{Keyring, DEFAULT_OWNER};

/// One request line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub op: String,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    /// `delete_owner`: the recipient's RSA public key, PEM.
    #[serde(default)]
    pub backup_to: Option<String>,
    /// `restore_owner`: the owner's keychains (a decrypted backup).
    #[serde(default)]
    pub backup: Option<Backup>,
    /// `config`: the new expiration.
    #[serde(default)]
    pub expiration_days: Option<u32>,
}

/// Who asks.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    /// The daemon's own user (not a member of the keys group only).
    pub is_owner: bool,
}

/// What the audit log says of one answer: never a key.
pub struct Audit {
    pub op: String,
    pub owner: Option<String>,
    pub service: Option<String>,
    pub outcome: String,
}

/// The stable error code of a failure.
pub fn code_of(e: &Error) -> &'static str {
    match e {
        Error::Sealed(_) => "sealed",
        Error::NoSuchKey(_) => "no_such_key",
        Error::Usage(_) | Error::InvalidName { .. } => "bad_request",
        Error::Exists(_) => "conflict",
        Error::Corrupt { .. } => "corrupt",
        _ => "failed",
    }
}

/// An error answer line (with its newline).
pub fn error_line(code: &str, message: &str) -> Zeroizing<Vec<u8>> {
    let mut v = json!({"ok": false, "error": code, "message": message}).to_string();
    v.push('\n');
    Zeroizing::new(v.into_bytes())
}

/// Answer one request line.
pub fn answer(
    ring: &Keyring,
    caller: Caller,
    line: &[u8],
    now: i64,
) -> (Zeroizing<Vec<u8>>, Audit) {
    let req: Request = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => {
            let audit = Audit {
                op: "?".into(),
                owner: None,
                service: None,
                outcome: "error bad_request".into(),
            };
            return (
                error_line("bad_request", &format!("bad request: {e}")),
                audit,
            );
        }
    };
    let mut audit = Audit {
        op: req.op.chars().take(32).collect(),
        owner: req.owner.clone(),
        service: req.service.clone(),
        outcome: String::new(),
    };
    let out = match run(ring, caller, req, now) {
        Ok((line, outcome)) => {
            audit.outcome = outcome;
            line
        }
        Err(e) => {
            let code = code_of(&e);
            audit.outcome = format!("error {code}");
            error_line(code, &e.to_string())
        }
    };
    (out, audit)
}

fn need(v: Option<String>, what: &str, op: &str) -> Result<String, Error> {
    v.ok_or_else(|| Error::Usage(format!("{op:?} needs {what:?}")))
}

/// Refuse fields the operation does not take.
fn only(req: &Request, allowed: &[&str]) -> Result<(), Error> {
    let given = [
        ("service", req.service.is_some()),
        ("owner", req.owner.is_some()),
        ("id", req.id.is_some()),
        ("backup_to", req.backup_to.is_some()),
        ("backup", req.backup.is_some()),
        ("expiration_days", req.expiration_days.is_some()),
    ];
    match given.iter().find(|(f, set)| *set && !allowed.contains(f)) {
        Some((f, _)) => Err(Error::Usage(format!("{:?} does not take {f:?}", req.op))),
        None => Ok(()),
    }
}

fn line_of(v: &serde_json::Value) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(v.to_string().into_bytes());
    out.push(b'\n');
    out
}

fn run(
    ring: &Keyring,
    caller: Caller,
    req: Request,
    now: i64,
) -> Result<(Zeroizing<Vec<u8>>, String), Error> {
    // Sealed: every request is refused the same way, before anything else.
    if ring.is_sealed() {
        return Err(Error::sealed_keys());
    }
    match req.op.as_str() {
        "get" => {
            only(&req, &["service", "owner", "id"])?;
            let service = need(req.service, "service", "get")?;
            let owner = req.owner.unwrap_or_else(|| DEFAULT_OWNER.into());
            let k = ring.get(&owner, &service, req.id.as_deref(), now)?;
            let outcome = format!("key {}", k.id);
            Ok((key_line(&k.id, &k.key, k.created), outcome))
        }
        "list" => {
            only(&req, &["owner"])?;
            let (keys, days) = ring.list(req.owner.as_deref())?;
            let keys: Vec<_> = keys
                .iter()
                .map(|l| {
                    json!({"owner": l.owner, "service": l.service, "id": l.id,
                           "created": l.created, "age_seconds": now.saturating_sub(l.created),
                           "default": l.default})
                })
                .collect();
            let n = keys.len();
            let v = json!({"ok": true, "expiration_days": days, "keys": keys});
            Ok((line_of(&v), format!("{n} keys listed")))
        }
        "delete_owner" => {
            only(&req, &["owner", "backup_to"])?;
            let owner = need(req.owner, "owner", "delete_owner")?;
            let Some(pem) = req.backup_to else {
                return Err(Error::Usage(
                    "\"delete_owner\" needs \"backup_to\": the RSA public key the backup is encrypted to".into(),
                ));
            };
            let to = backup::recipient(&pem)?;
            let b = ring.delete_owner(&owner)?;
            let file = backup::seal(&to, &b);
            let n = b.len();
            let v = json!({"ok": true, "owner": owner, "deleted": n,
                           "backup": STANDARD.encode(&file)});
            Ok((line_of(&v), format!("{n} keys deleted")))
        }
        "restore_owner" => {
            only(&req, &["backup"])?;
            let Some(b) = req.backup else {
                return Err(Error::Usage("\"restore_owner\" needs \"backup\"".into()));
            };
            let owner = b.owner.clone();
            let n = ring.restore_owner(b)?;
            let v = json!({"ok": true, "owner": owner, "restored": n});
            Ok((line_of(&v), format!("{n} keys restored")))
        }
        "config" => {
            only(&req, &["expiration_days"])?;
            if req.expiration_days.is_some() && !caller.is_owner {
                return Err(Error::Usage(
                    "only the daemon's own user may change the configuration".into(),
                ));
            }
            let days = ring.expiration_days(req.expiration_days)?;
            let v = json!({"ok": true, "expiration_days": days});
            Ok((line_of(&v), format!("expiration {days} days")))
        }
        other => Err(Error::Usage(format!(
            "unknown op {:?} (get, list, delete_owner, restore_owner, config)",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// `{"ok":true,"id":...,"key":...,"created":...}` in a zeroizing buffer.
fn key_line(id: &str, key: &crate::crypto::SymKey, created: i64) -> Zeroizing<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct KeyAnswer<'a> {
        ok: bool,
        id: &'a str,
        key: &'a str,
        created: i64,
    }
    let b64 = encode_key(key);
    let ans = KeyAnswer {
        ok: true,
        id,
        key: b64.as_str(),
        created,
    };
    // to_json's buffer starts with room for far more than one answer, so the
    // newline does not move (and leave behind) the key.
    let mut out = to_json(&ans);
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SymKey;

    fn call(ring: &Keyring, line: &str) -> serde_json::Value {
        let caller = Caller {
            uid: 0,
            is_owner: true,
        };
        let (out, _) = answer(ring, caller, line.as_bytes(), 1_800_000_000);
        assert_eq!(out.last(), Some(&b'\n'));
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn malformed_and_unknown_requests_get_errors() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::open(dir.path(), SymKey::generate()).unwrap();
        for bad in [
            "",
            "nonsense",
            "[]",
            "{}",
            r#"{"op":"get"}"#,
            r#"{"op":"get","service":"s","Id":"x"}"#,
            r#"{"op":"get","service":""}"#,
            r#"{"op":"get","service":"s","backup_to":"x"}"#,
            r#"{"op":"fly"}"#,
            r#"{"op":"delete_owner","owner":"o"}"#,
            r#"{"op":"delete_owner","owner":"o","backup_to":"not a key"}"#,
            r#"{"op":"restore_owner","backup":{"owner":"o","services":{"s":[{"id":"i","created":1,"key":"short"}]}}}"#,
            r#"{"op":"config","expiration_days":0}"#,
        ] {
            let v = call(&ring, bad);
            assert_eq!(v["ok"], false, "{bad}");
            assert_eq!(v["error"], "bad_request", "{bad}: {v}");
        }
        let v = call(&ring, r#"{"op":"get","service":"s","id":"nope"}"#);
        assert_eq!(v["error"], "no_such_key");
        assert!(ring.list(None).unwrap().0.is_empty());
    }

    #[test]
    fn get_list_and_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::open(dir.path(), SymKey::generate()).unwrap();
        let v = call(&ring, r#"{"op":"get","service":"s"}"#);
        assert_eq!(v["ok"], true);
        assert_eq!(
            STANDARD.decode(v["key"].as_str().unwrap()).unwrap().len(),
            32
        );
        let w = call(
            &ring,
            r#"{"op":"get","service":"s","owner":"default","id":ID}"#
                .replace("ID", &v["id"].to_string())
                .as_str(),
        );
        assert_eq!(w["key"], v["key"]);
        let l = call(&ring, r#"{"op":"list"}"#);
        assert_eq!(l["keys"][0]["id"], v["id"]);
        assert!(l["keys"][0].get("key").is_none());
        ring.seal();
        for req in [
            r#"{"op":"get","service":"s"}"#,
            r#"{"op":"list"}"#,
            r#"{"op":"config"}"#,
            r#"{"op":"restore_owner","backup":{"owner":"o","services":{}}}"#,
        ] {
            assert_eq!(call(&ring, req)["error"], "sealed", "{req}");
        }
    }
}
