//! `secret cat`, `secret add` and `secret write` of a big secret run in
//! bounded memory (unmounted): the file is decrypted a batch of pages at a
//! time, checked by the seal first, and sealed a page at a time.

mod common;

use std::fs;
use std::process::{Command, Stdio};

use common::mount::Mounted;
use common::*;

const MIB: usize = 1024 * 1024;

/// Run `pkfs ARGS > out` under /usr/bin/time; (exit code, peak RSS in KiB).
fn measured(n: &Node, args: &[&str], out: &std::path::Path) -> (i32, u64) {
    measured_in(n, args, None, out, &[])
}

fn measured_in(
    n: &Node,
    args: &[&str],
    stdin: Option<&std::path::Path>,
    out: &std::path::Path,
    env: &[(&str, &str)],
) -> (i32, u64) {
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
        .envs(env.iter().copied())
        .stdin(match stdin {
            Some(p) => Stdio::from(fs::File::open(p).unwrap()),
            None => Stdio::null(),
        })
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

#[test]
fn add_and_write_of_a_big_secret_stay_under_64_mib() {
    let n = Node::with_vault();
    let size = 160 * MIB + 777;
    let data = pseudo_random(size, 5);
    let src = n.scratch_file("src", &data);
    let out = n.scratch().join("out");
    let (code, kib) = measured(
        &n,
        &["secret", "add", src.to_str().unwrap(), "v:added"],
        &out,
    );
    assert_eq!(code, 0);
    assert!(kib < 64 * 1024, "add: peak RSS {kib} KiB");
    let (code, kib) = measured_in(&n, &["secret", "write", "v:written"], Some(&src), &out, &[]);
    assert_eq!(code, 0);
    assert!(kib < 64 * 1024, "write: peak RSS {kib} KiB");
    for name in ["added", "written"] {
        let (code, _) = measured(&n, &["secret", "cat", &format!("v:{name}")], &out);
        assert_eq!(code, 0);
        assert!(fs::read(&out).unwrap() == data, "{name} differs");
    }
    // Empty and page-sized inputs round-trip too.
    for len in [0usize, 1, 4096, 8192, 8193] {
        let d = pseudo_random(len, len as u64);
        let f = n.scratch_file("small", &d);
        n.ok(["secret", "add", f.to_str().unwrap(), "v:s"]);
        assert_eq!(n.cat("v:s"), d, "{len}");
    }
    // An endless input ends at the limit with a clear error, in bounded memory.
    let (code, kib) = measured_in(
        &n,
        &["secret", "add", "/dev/zero", "v:zero"],
        None,
        &out,
        &[("PKFS_TEST_ONLY_MAX_INPUT", "100000000")],
    );
    assert_eq!(code, ExitCode::Failure as i32);
    assert!(kib < 64 * 1024, "/dev/zero: peak RSS {kib} KiB");
    n.fail(ExitCode::NotFound, ["secret", "cat", "v:zero"]);
    assert_eq!(
        n.commits("v"),
        1 + 2 + 5,
        "the refused input committed nothing"
    );
}
