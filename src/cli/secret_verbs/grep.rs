//! `pkfs secret grep PATTERN [VAULT...]`: every line of every regular file
//! that matches, as `VAULT:PATH:LINE`, vault by vault and file by file in
//! path order, each line written as it is found. Like grep(1), a file with a
//! NUL byte is taken for binary and skipped, and the exit status is 0 when a
//! line matched, 1 when none did; a file that cannot be read is reported and
//! the search goes on (its error is the command's).

use pkfs::store::{Kind, VPath};
use pkfs::vault::Node;
use pkfs::Error;
use regex::bytes::RegexBuilder;
use zeroize::Zeroizing;

use crate::cli::cmd_secret::Vaults;
use crate::cli::{write_err, write_out};

pub fn run(
    node: &Node,
    vaults: &mut Vaults,
    pattern: &str,
    names: &[String],
    ignore_case: bool,
) -> Result<(), Error> {
    let re = RegexBuilder::new(pattern)
        .case_insensitive(ignore_case)
        .build()
        .map_err(|e| Error::Usage(format!("bad pattern {pattern:?}: {}", one_line(&e))))?;
    let mut matched = false;
    let mut failure = None;
    let mut names = node.names_or_all(names);
    names.sort();
    for name in names {
        let tree = vaults.get(&name)?.tree();
        let mut files: Vec<VPath> = tree
            .walk(&VPath::root())?
            .into_iter()
            .filter(|(_, e)| e.kind == Kind::File)
            .map(|(p, _)| p)
            .collect();
        files.sort_by(|a, b| a.components().cmp(b.components()));
        for path in files {
            let data = match tree.read(&path) {
                Ok(d) => d,
                Err(e) => {
                    write_err(format!("pkfs: {name}:{path}: {e}\n").as_bytes());
                    failure.get_or_insert(e);
                    continue;
                }
            };
            if data.contains(&0) {
                continue;
            }
            let prefix = format!("{name}:{path}:");
            for line in data.split_inclusive(|&b| b == b'\n') {
                let text = line.strip_suffix(b"\n").unwrap_or(line);
                if re.is_match(text) {
                    matched = true;
                    let mut out = Zeroizing::new(Vec::with_capacity(prefix.len() + text.len() + 1));
                    out.extend_from_slice(prefix.as_bytes());
                    out.extend_from_slice(text);
                    out.push(b'\n');
                    write_out(&out).map_err(|e| Error::io("stdout", e))?;
                }
            }
        }
    }
    match (failure, matched) {
        (Some(e), _) => Err(e),
        (None, true) => Ok(()),
        (None, false) => Err(Error::NoMatch),
    }
}

/// The regex crate's error, which draws the pattern over several lines, as
/// one line: the line that names the problem.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    let found = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string);
    found.unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}
