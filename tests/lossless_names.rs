//! Names that are not valid UTF-8 round-trip byte for byte through every text
//! output and back through `VAULT:PATH` arguments: path text writes such a
//! byte `\xHH` and a backslash `\\` (see `store::vpath`).

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;

use common::mount::Mounted;
use common::*;

/// (bytes of the name, its path text, content)
fn names() -> Vec<(Vec<u8>, &'static str, &'static str)> {
    vec![
        (b"\xff".to_vec(), "\\xff", "ff"),
        (b"\xfe".to_vec(), "\\xfe", "fe"),
        ("\u{fffd}".as_bytes().to_vec(), "\u{fffd}", "replacement"),
        (b"a\\b".to_vec(), "a\\\\b", "backslash"),
        (b"\\xff".to_vec(), "\\\\xff", "looks escaped"),
    ]
}

fn ls_json(n: &Node, target: &str) -> BTreeSet<String> {
    n.ok(["--json", "secret", "ls", target])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

fn logged_paths(n: &Node) -> BTreeSet<String> {
    n.log("v", false)
        .iter()
        .flat_map(|c| c["changes"].as_array().cloned().unwrap_or_default())
        .map(|ch| ch["path"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn check_listing_and_reach(n: &Node, dir: &str) {
    let want: BTreeSet<String> = names().iter().map(|(_, t, _)| t.to_string()).collect();
    assert_eq!(ls_json(n, &format!("v:{dir}")), want);
    // The human listing (into a pipe) shows the same text.
    let human: BTreeSet<String> = n.ls(&format!("v:{dir}")).into_iter().collect();
    assert_eq!(human, want);
    for (_, text, content) in names() {
        let target = format!("v:{dir}/{text}");
        assert_eq!(n.cat(&target), content.as_bytes(), "{target}");
        let j = n.ok(["--json", "secret", "stat", &target]).json();
        assert_eq!(j["path"], format!("{dir}/{text}"));
    }
}

#[test]
fn names_made_through_the_mount_are_reachable_from_the_cli_and_logged() {
    let m = Mounted::new();
    fs::create_dir(m.path("d")).unwrap();
    for (bytes, _, content) in names() {
        fs::write(m.path("d").join(OsStr::from_bytes(&bytes)), content).unwrap();
    }
    m.wait_committed();
    check_listing_and_reach(&m.node, "d");
    let logged = logged_paths(&m.node);
    for (_, text, _) in names() {
        assert!(
            logged.contains(&format!("d/{text}")),
            "{text} in {logged:?}"
        );
    }
    // Made from the CLI, seen through the mount with its bytes.
    m.node.write("v:d/\\x80z", "from the cli");
    assert_eq!(
        fs::read(m.path("d").join(OsStr::from_bytes(b"\x80z"))).unwrap(),
        b"from the cli"
    );
    m.node.ok(["secret", "mv", "v:d/\\xfe", "v:d/\\xfd"]);
    assert!(m.path("d").join(OsStr::from_bytes(b"\xfd")).exists());
    assert!(logged_paths(&m.node).contains("d/\\xfd"));
}

#[test]
fn names_made_from_the_cli_round_trip_unmounted() {
    let n = Node::with_vault();
    for (_, text, content) in names() {
        n.write(&format!("v:d/{text}"), content);
    }
    check_listing_and_reach(&n, "d");
    let logged = logged_paths(&n);
    for (_, text, _) in names() {
        assert!(
            logged.contains(&format!("d/{text}")),
            "{text} in {logged:?}"
        );
    }
    // The grep output names them the same way.
    let out = n.ok(["secret", "grep", "^ff$"]).out();
    assert_eq!(out, "v:d/\\xff:ff\n");
}
