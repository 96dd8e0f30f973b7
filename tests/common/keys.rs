//! The two test root keys: created on first use, cached on disk for the whole
//! `cargo test` run, and what can be derived from them (PEM text, node ids).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pkfs::crypto::rsa::{RootKeypair, RootPublic};

/// Path of cached test root key `i` (0 or 1), generated on first use.
pub fn root_key(i: usize) -> &'static Path {
    static KEYS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-root-keys");
        fs::create_dir_all(&dir).expect("creating the test key directory");
        (0..2).map(|i| cached_key(&dir, i)).collect()
    });
    &keys[i]
}

fn cached_key(dir: &Path, i: usize) -> PathBuf {
    let path = dir.join(format!("key{i}.pem"));
    if let Ok(pem) = fs::read_to_string(&path) {
        if RootKeypair::from_pkcs8_pem(&pem).is_ok() {
            return path;
        }
        // Unparseable (should never happen with hard-link publishing): replace it.
        let _ = fs::remove_file(&path);
    }
    let key = RootKeypair::generate().expect("generating a test root key");
    let tmp = dir.join(format!(
        ".key{i}.pem.tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    {
        let mut f = fs::File::create(&tmp).expect("writing a test root key");
        f.write_all(key.to_pkcs8_pem().as_bytes()).unwrap();
        f.sync_all().unwrap();
    }
    // link(2) fails when `path` exists: the first writer wins, nobody replaces it.
    match fs::hard_link(&tmp, &path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("publishing {}: {e}", path.display()),
    }
    let _ = fs::remove_file(&tmp);
    path
}

/// The PEM text of test root key `i`.
pub fn root_key_pem(i: usize) -> String {
    fs::read_to_string(root_key(i)).unwrap()
}

/// The node id of test root key `i`, computed by the library.
pub fn key_node_id(i: usize) -> String {
    RootKeypair::from_pkcs8_pem(&root_key_pem(i))
        .expect("test key parses")
        .public()
        .node_id()
}

/// Node id of the `root.pub` of a home, recomputed from its PEM.
pub fn node_id_of_root_pub(home: &Path) -> String {
    let pem = fs::read_to_string(home.join("root.pub")).unwrap();
    RootPublic::from_pem(&pem)
        .expect("root.pub parses")
        .node_id()
}
