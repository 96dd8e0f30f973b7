//! Real tools on a real mount: cp, tar, diff, git, sqlite3, rsync, sed, vim,
//! tail, and processes sharing a file. Each test then unmounts and checks
//! through the CLI that the change was committed.
//!
//! The "source tree" is a snapshot of this repository's `src/` and `tests/`,
//! copied into the scratch space first (the checkout may change meanwhile).

mod common;

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use common::mount::Mounted;
use common::need;

/// Run a command; it must succeed.
fn run(c: &mut Command) -> Output {
    let out = c
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawning {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed ({})\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout_of(c: &mut Command) -> String {
    String::from_utf8(run(c).stdout).unwrap()
}

/// `diff -r A B` must find no difference.
fn assert_diff_clean(a: &Path, b: &Path) {
    need("diff");
    run(Command::new("diff").arg("-r").arg(a).arg(b));
}

/// A private copy of this repository's `src/` and `tests/` under `scratch/tree`.
fn source_tree(m: &Mounted) -> PathBuf {
    need("cp");
    let tree = m.node.scratch().join("tree");
    fs::create_dir(&tree).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    run(Command::new("cp")
        .arg("-r")
        .arg(repo.join("src"))
        .arg(repo.join("tests"))
        .arg(&tree));
    assert!(tree.join("src/lib.rs").is_file());
    tree
}

#[test]
fn cp_r_and_tar_x_of_a_source_tree() {
    need("tar");
    let mut m = Mounted::new();
    let tree = source_tree(&m);
    let tarball = m.node.scratch().join("tree.tar");
    run(Command::new("tar")
        .arg("-c")
        .arg("-f")
        .arg(&tarball)
        .arg("-C")
        .arg(&tree)
        .args(["src", "tests"]));

    run(Command::new("cp").arg("-r").arg(&tree).arg(m.path("cp")));
    assert_diff_clean(&tree, &m.path("cp"));

    fs::create_dir(m.path("tarx")).unwrap();
    run(Command::new("tar")
        .arg("-x")
        .arg("-f")
        .arg(&tarball)
        .arg("-C")
        .arg(m.path("tarx")));
    assert_diff_clean(&tree, &m.path("tarx"));

    m.umount();
    assert_eq!(m.node.ls("v:"), ["cp/", "tarx/"]);
    assert_eq!(m.node.ls("v:cp"), ["src/", "tests/"]);
    for rel in ["src/lib.rs", "src/fs/content.rs", "tests/common/mod.rs"] {
        let want = fs::read(tree.join(rel)).unwrap();
        assert_eq!(m.node.cat(&format!("v:cp/{rel}")), want, "cp/{rel}");
        assert_eq!(m.node.cat(&format!("v:tarx/{rel}")), want, "tarx/{rel}");
    }
    assert!(m.node.commits("v") >= 2, "the copy was committed");
    // And a fresh mount still has it all.
    m.mount(&[]);
    assert_diff_clean(&tree, &m.path("cp"));
}

#[test]
fn git_repository_inside_a_vault() {
    let mut m = Mounted::new();
    let repo = m.path("repo");
    fs::create_dir(&repo).unwrap();
    let git = |args: &[&str]| {
        let out = common::git(&repo, args);
        assert!(
            out.status.success(),
            "git {args:?} failed\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let ident = [
        "-c",
        "user.name=Test User",
        "-c",
        "user.email=test@example.com",
    ];
    git(&["init", "-q", "-b", "main"]);
    fs::write(repo.join("README.md"), b"# a repository in a vault\n").unwrap();
    fs::create_dir(repo.join("src")).unwrap();
    fs::write(repo.join("src/main.c"), b"int main(void) { return 0; }\n").unwrap();
    git(&["add", "."]);
    git(&[&ident[..], &["commit", "-q", "-m", "first commit"]].concat());
    fs::write(
        repo.join("README.md"),
        b"# a repository in a vault\n\nmore\n",
    )
    .unwrap();
    git(&["add", "README.md"]);
    git(&[&ident[..], &["commit", "-q", "-m", "second commit"]].concat());

    assert_eq!(
        git(&["log", "--format=%s"]),
        "second commit\nfirst commit\n"
    );
    assert_eq!(git(&["status", "--porcelain"]), "");
    assert_eq!(git(&["ls-files"]), "README.md\nsrc/main.c\n");
    git(&["fsck", "--strict", "--no-progress"]);
    // Packing rewrites, renames and deletes a good part of .git.
    git(&["gc", "--quiet", "--prune=now"]);
    assert_eq!(
        git(&["count-objects", "-v"]).lines().next(),
        Some("count: 0")
    );
    git(&["fsck", "--strict", "--no-progress"]);
    assert_eq!(
        git(&["log", "--format=%s"]),
        "second commit\nfirst commit\n"
    );

    m.umount();
    assert_eq!(
        m.node.cat("v:repo/README.md"),
        b"# a repository in a vault\n\nmore\n"
    );
    assert!(
        m.node.ls("v:repo").contains(&"src/".to_string()),
        "{:?}",
        m.node.ls("v:repo")
    );
    // The repository itself survives: same history, clean tree, sound objects.
    m.mount(&[]);
    assert_eq!(
        git(&["log", "--format=%s"]),
        "second commit\nfirst commit\n"
    );
    assert_eq!(git(&["status", "--porcelain"]), "");
    git(&["fsck", "--strict", "--no-progress"]);
}

#[test]
fn sqlite_database_survives_a_remount() {
    need("sqlite3");
    let mut m = Mounted::new();
    let db = m.path("data.sqlite");
    let sql = |q: &str| stdout_of(Command::new("sqlite3").arg(&db).arg(q));
    sql(
        "create table t(id integer primary key, name text not null);\
         insert into t(name) values ('one'), ('two'), ('three');",
    );
    let query = "select id, name from t order by id;";
    assert_eq!(sql(query), "1|one\n2|two\n3|three\n");
    // A few more transactions, with a rollback journal each time.
    for i in 4..=20 {
        sql(&format!("insert into t(name) values ('row {i}');"));
    }
    sql("delete from t where id > 3 and id % 2 = 0;");
    let expected = "1|one\n2|two\n3|three\n5|row 5\n7|row 7\n9|row 9\n11|row 11\n\
                    13|row 13\n15|row 15\n17|row 17\n19|row 19\n";
    assert_eq!(sql(query), expected);
    assert_eq!(sql("pragma integrity_check;"), "ok\n");
    let size = fs::metadata(&db).unwrap().len();

    m.umount();
    m.mount(&[]);
    assert_eq!(sql(query), expected, "after a remount");
    assert_eq!(sql("pragma integrity_check;"), "ok\n");

    m.umount();
    let committed = m.node.cat("v:data.sqlite");
    assert_eq!(committed.len() as u64, size);
    assert!(committed.starts_with(b"SQLite format 3\0"));
    // The committed bytes are the same database.
    let copy = m.node.scratch().join("copy.sqlite");
    fs::write(&copy, &committed).unwrap();
    let out = stdout_of(Command::new("sqlite3").arg(&copy).arg(query));
    assert_eq!(out, expected);
    assert_eq!(m.node.ls("v:"), ["data.sqlite"], "no journal left behind");
}

#[test]
fn rsync_into_the_vault_preserves_content_modes_and_mtimes() {
    need("rsync");
    let mut m = Mounted::new();
    let tree = source_tree(&m);
    let stamped = tree.join("src/lib.rs");
    let past = UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    fs::File::options()
        .write(true)
        .open(&stamped)
        .unwrap()
        .set_modified(past)
        .unwrap();
    let private = tree.join("src/main.rs");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();

    let mut src_arg = tree.clone().into_os_string();
    src_arg.push("/");
    let mut dst_arg = m.path("rs").into_os_string();
    dst_arg.push("/");
    let rsync = |extra: &[&str]| {
        run(Command::new("rsync")
            .arg("-a")
            .args(extra)
            .arg(&src_arg)
            .arg(&dst_arg))
    };
    rsync(&[]);
    assert_diff_clean(&tree, &m.path("rs"));
    let dst = fs::metadata(m.path("rs/src/lib.rs")).unwrap();
    assert_eq!(dst.mtime(), 1_234_567_890, "rsync -a keeps the mtime");
    assert_eq!(
        dst.mtime(),
        fs::metadata(&stamped).unwrap().mtime(),
        "same mtime as the source"
    );
    assert_eq!(
        fs::metadata(m.path("rs/src/main.rs")).unwrap().mode() & 0o7777,
        0o600
    );

    // An update: rsync writes a temporary file and renames it over the old one.
    let mut text = fs::read(&stamped).unwrap();
    text.extend_from_slice(b"\n// appended by the rsync test\n");
    fs::write(&stamped, &text).unwrap();
    rsync(&[]);
    assert_diff_clean(&tree, &m.path("rs"));
    // And an in-place delta update of a file's middle.
    let target = tree.join("src/error.rs");
    let mut body = fs::read(&target).unwrap();
    let mid = body.len() / 2;
    body[mid..mid + 8].copy_from_slice(b"XXXXXXXX");
    fs::write(&target, &body).unwrap();
    // Same size: only a different mtime tells rsync that the file changed (a
    // write within the second of the previous copy may leave it unchanged).
    let changed = UNIX_EPOCH + Duration::from_secs(1_300_000_000);
    fs::File::options()
        .write(true)
        .open(&target)
        .unwrap()
        .set_modified(changed)
        .unwrap();
    rsync(&["--inplace", "--no-whole-file"]);
    assert_diff_clean(&tree, &m.path("rs"));

    m.umount();
    assert_eq!(m.node.cat("v:rs/src/lib.rs"), text);
    assert_eq!(m.node.cat("v:rs/src/error.rs"), body);
    m.mount(&[]);
    assert_eq!(
        fs::metadata(m.path("rs/src/error.rs")).unwrap().mtime(),
        1_300_000_000,
        "mtime after an in-place update and a remount"
    );
}

#[test]
fn sed_i_and_vim_edit_files_in_place() {
    need("sed");
    need("vim");
    let mut m = Mounted::new();
    let (s, v) = (m.path("sed.txt"), m.path("vim.txt"));
    fs::write(&s, b"banana\nalpha\nzzz\n").unwrap();
    run(Command::new("sed").args(["-i", "s/an/AN/g"]).arg(&s));
    assert_eq!(fs::read_to_string(&s).unwrap(), "bANANa\nalpha\nzzz\n");

    fs::write(&v, b"banana\nalpha\nzzz\n").unwrap();
    run(Command::new("vim")
        .args(["-u", "NONE", "-i", "NONE", "-es"])
        .args(["-c", "%s/a/b/", "-c", "wq"])
        .arg(&v));
    assert_eq!(fs::read_to_string(&v).unwrap(), "bbnana\nblpha\nzzz\n");
    // Neither tool left a temporary, backup or swap file behind.
    let mut names: Vec<String> = fs::read_dir(m.v())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["sed.txt", "vim.txt"]);

    m.umount();
    assert_eq!(m.node.cat("v:sed.txt"), b"bANANa\nalpha\nzzz\n");
    assert_eq!(m.node.cat("v:vim.txt"), b"bbnana\nblpha\nzzz\n");
}

// ---------------------------------------------------------------------------
// Several processes on one file.

fn lines(n: usize) -> String {
    (1..=n)
        .map(|i| format!("line {i} of the appender\n"))
        .collect()
}

/// Wait for a child; it must succeed.
fn wait_ok(mut c: Child, what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(mut so) = c.stdout.take() {
        so.read_to_end(&mut out).unwrap();
    }
    let st = c.wait().unwrap();
    assert!(st.success(), "{what} failed: {st}");
    out
}

// This raced (2 of 60 runs with two copies in parallel) while every open
// dropped the kernel's page cache: see `FILE_OPEN_FLAGS` in src/fs/adapter.rs.
#[test]
fn one_process_appends_while_others_read() {
    need("sh");
    need("tail");
    let mut m = Mounted::new();
    let p = m.path("growing.log");
    fs::write(&p, b"").unwrap();
    const N: usize = 300;
    let expected = lines(N);
    // The writer: one `>>` (open with O_APPEND, write, close) per line.
    let writer = Command::new("sh")
        .arg("-c")
        .arg(r#"i=1; while [ $i -le "$2" ]; do echo "line $i of the appender" >> "$1"; i=$((i+1)); done"#)
        .arg("sh")
        .arg(&p)
        .arg(N.to_string())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // A second process following the file until the writer is gone.
    let follower = Command::new("tail")
        .args(["-c", "+1", "-s", "0.05", "-f"])
        .arg(format!("--pid={}", writer.id()))
        .arg(&p)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // This process reads meanwhile: every read is a prefix of the final text.
    let mut writer = writer;
    loop {
        let done = writer.try_wait().unwrap();
        let got = fs::read(&p).unwrap();
        assert!(
            expected.as_bytes().starts_with(&got),
            "read {} bytes that are not a prefix of what is appended:\n{:?}",
            got.len(),
            String::from_utf8_lossy(&got[got.len().saturating_sub(200)..])
        );
        if let Some(st) = done {
            assert!(st.success(), "writer: {st}");
            break;
        }
    }
    assert_eq!(fs::read_to_string(&p).unwrap(), expected);
    let followed = wait_ok(follower, "tail -f");
    assert_eq!(
        String::from_utf8_lossy(&followed),
        expected,
        "tail -f saw it all"
    );

    m.umount();
    assert_eq!(m.node.cat("v:growing.log"), expected.as_bytes());
}

#[test]
fn a_file_held_open_by_two_processes() {
    need("sh");
    need("cat");
    let mut m = Mounted::new();
    let p = m.path("shared.txt");
    fs::write(&p, b"").unwrap();
    // The reader opens the file once, then on each line of input prints what
    // its descriptor reads from its current offset to the end.
    let mut reader = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 3<"$1"; echo ready; while read _; do cat <&3; printf '\n--end--\n'; done"#)
        .arg("sh")
        .arg(&p)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_reader = reader.stdin.take().unwrap();
    let mut from_reader = BufReader::new(reader.stdout.take().unwrap());
    let mut line = String::new();
    from_reader.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let mut ask = || -> String {
        writeln!(to_reader).unwrap();
        to_reader.flush().unwrap();
        let mut got = String::new();
        loop {
            let mut l = String::new();
            assert!(from_reader.read_line(&mut l).unwrap() > 0, "reader exited");
            if l == "--end--\n" {
                break;
            }
            got.push_str(&l);
        }
        got.strip_suffix('\n').unwrap().to_string()
    };

    let mut w = OpenOptions::new().write(true).open(&p).unwrap();
    w.write_all(b"first part, then fsync").unwrap();
    w.sync_all().unwrap();
    assert_eq!(ask(), "first part, then fsync");
    w.write_all(b"; second part, then close").unwrap();
    drop(w);
    assert_eq!(ask(), "; second part, then close");
    // A rewrite from the start by a new writer shows at the reader's offset too.
    let w = OpenOptions::new().write(true).open(&p).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&w, b"FIRST", 0).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&w, b" and a tail", 47).unwrap();
    drop(w);
    assert_eq!(ask(), " and a tail");
    drop(to_reader);
    drop(from_reader);
    assert!(reader.wait().unwrap().success());

    let want = "FIRST part, then fsync; second part, then close and a tail";
    assert_eq!(fs::read_to_string(&p).unwrap(), want);
    m.umount();
    assert_eq!(m.node.cat("v:shared.txt"), want.as_bytes());
}

#[test]
fn ls_find_and_rm_r_of_a_large_directory() {
    need("ls");
    need("find");
    need("rm");
    let mut m = Mounted::new();
    let dir = m.path("many");
    fs::create_dir(&dir).unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    let mut want: Vec<String> = (0..400)
        .map(|i| format!("file-{i:04}-{}", "x".repeat(i % 60)))
        .collect();
    for (i, n) in want.iter().enumerate() {
        let at = if i % 4 == 0 {
            dir.join("sub").join(n)
        } else {
            dir.join(n)
        };
        fs::write(at, n.as_bytes()).unwrap();
    }
    // Enough entries that one listing takes several readdir calls.
    let listed = stdout_of(Command::new("ls").arg("-1").arg("-A").arg(&dir));
    let mut top: Vec<String> = want
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 0)
        .map(|(_, n)| n.clone())
        .collect();
    top.push("sub".into());
    top.sort();
    assert_eq!(listed.lines().collect::<Vec<_>>(), top);
    let found = stdout_of(Command::new("find").arg(&dir).args(["-type", "f"]));
    let mut found: Vec<String> = found
        .lines()
        .map(|l| {
            Path::new(l)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    found.sort();
    want.sort();
    assert_eq!(found, want);
    // rm -r unlinks while it reads the directory.
    run(Command::new("rm").arg("-r").arg(&dir));
    assert!(!dir.exists());
    assert!(fs::read_dir(m.v()).unwrap().next().is_none());
    m.umount();
    assert!(m.node.ls("v:").is_empty());
}

#[test]
fn sqlite_in_wal_mode_uses_shared_memory() {
    need("sqlite3");
    let mut m = Mounted::new();
    let db = m.path("wal.sqlite");
    let sql = |q: &str| stdout_of(Command::new("sqlite3").arg(&db).arg(q));
    assert_eq!(sql("pragma journal_mode=wal;"), "wal\n");
    sql("create table t(x integer); insert into t values (1), (2);");
    // Two connections at once: a reader holds a transaction while a writer commits.
    let mut reader = Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rin = reader.stdin.take().unwrap();
    let mut rout = BufReader::new(reader.stdout.take().unwrap());
    writeln!(rin, "begin; select count(*) from t;").unwrap();
    rin.flush().unwrap();
    let mut line = String::new();
    rout.read_line(&mut line).unwrap();
    assert_eq!(line, "2\n");
    sql("insert into t values (3);");
    // The reader's snapshot is unchanged until it ends its transaction.
    writeln!(
        rin,
        "select count(*) from t; commit; select count(*) from t;"
    )
    .unwrap();
    drop(rin);
    let mut tail = String::new();
    rout.read_to_string(&mut tail).unwrap();
    assert_eq!(tail, "2\n3\n");
    assert!(reader.wait().unwrap().success(), "the reading sqlite3");
    assert_eq!(sql("select sum(x) from t;"), "6\n");
    assert_eq!(sql("pragma integrity_check;"), "ok\n");
    m.umount();
    let committed = m.node.cat("v:wal.sqlite");
    let copy = m.node.scratch().join("copy.sqlite");
    fs::write(&copy, &committed).unwrap();
    let out = stdout_of(
        Command::new("sqlite3")
            .arg(&copy)
            .arg("select sum(x) from t;"),
    );
    assert_eq!(
        out, "6\n",
        "the last connection checkpointed into the database"
    );
}

#[test]
fn mv_between_vaults_copies_across_the_exdev() {
    need("mv");
    let mut m = Mounted::new();
    fs::create_dir(m.mnt.join("w")).unwrap();
    fs::write(m.path("file.txt"), b"moving file").unwrap();
    fs::create_dir_all(m.path("dir/sub")).unwrap();
    fs::write(m.path("dir/sub/inner.txt"), b"moving dir").unwrap();
    let e = fs::rename(m.path("file.txt"), m.mnt.join("w/file.txt")).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::EXDEV),
        "rename(2) across vaults: {e}"
    );
    run(Command::new("mv")
        .arg(m.path("file.txt"))
        .arg(m.path("dir"))
        .arg(m.mnt.join("w")));
    assert!(fs::read_dir(m.v()).unwrap().next().is_none(), "v is empty");
    assert_eq!(fs::read(m.mnt.join("w/file.txt")).unwrap(), b"moving file");
    assert_eq!(
        fs::read(m.mnt.join("w/dir/sub/inner.txt")).unwrap(),
        b"moving dir"
    );
    m.umount();
    assert!(m.node.ls("v:").is_empty());
    assert_eq!(m.node.cat("w:file.txt"), b"moving file");
    assert_eq!(m.node.cat("w:dir/sub/inner.txt"), b"moving dir");
}
