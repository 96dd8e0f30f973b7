//! `secret cat` of a big secret runs in bounded memory (unmounted): the file
//! is decrypted a batch of pages at a time, checked by the seal first.

mod common;

use std::fs;
use std::process::{Command, Stdio};

use common::mount::Mounted;
use common::*;

const MIB: usize = 1024 * 1024;

/// Run `pkfs ARGS > out` under /usr/bin/time; (exit code, peak RSS in KiB).
fn measured(n: &Node, args: &[&str], out: &std::path::Path) -> (i32, u64) {
    let report = n.scratch().join("rss");
    let mut c = Command::new("/usr/bin/time");
    clean_env(&mut c);
    let st = c
        .args(["-f", "%M", "-o"])
        .arg(&report)
        .arg(BIN)
        .arg("--home")
        .arg(&n.home)
        .arg("--passfile")
        .arg(&n.passfile)
        .args(args)
        .env("PKFS_TEST_ONLY_FAST_KDF", "1")
        .stdout(fs::File::create(out).unwrap())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    let kib = fs::read_to_string(&report).unwrap();
    let kib = kib.lines().last().unwrap().trim().parse().unwrap();
    (st.code().unwrap_or(-1), kib)
}

#[test]
fn cat_of_a_big_secret_stays_under_64_mib() {
    assert!(
        std::path::Path::new("/usr/bin/time").exists(),
        "needs GNU time"
    );
    let mut m = Mounted::new();
    let size = 160 * MIB + 12_345;
    let data = pseudo_random(size, 3);
    fs::write(m.path("big"), &data).unwrap();
    m.umount();
    let out = m.node.scratch().join("out");
    // First read: hashed whole, then streamed; second: by its tag list.
    for round in 0..2 {
        let (code, kib) = measured(&m.node, &["secret", "cat", "v:big"], &out);
        assert_eq!(code, 0);
        assert!(kib < 64 * 1024, "round {round}: peak RSS {kib} KiB");
        assert!(
            fs::read(&out).unwrap() == data,
            "round {round}: content differs"
        );
    }
    // A small one is read whole, as before.
    m.node.write("v:small", "s");
    assert_eq!(m.node.cat("v:small"), b"s");
}

#[test]
fn a_big_secret_changed_at_rest_is_refused() {
    let mut m = Mounted::new();
    let data = pseudo_random(8 * MIB, 4);
    fs::write(m.path("big"), &data).unwrap();
    m.umount();
    let blob = largest_blob(&m.node.vault_dir("v"));
    flip_byte(&blob, 6 * MIB);
    let o = m.node.fail(ExitCode::Corrupt, ["secret", "cat", "v:big"]);
    assert!(o.stdout.len() < 6 * MIB, "nothing past the damage is shown");
}
