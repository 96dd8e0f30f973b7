//! The test vectors of `docs/FORMAT.md`: blocks fenced as `vectors`, one
//! `key = value` per line (see FORMAT.md, "Test vectors").

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not a hex digit: {:?}", c as char),
        }
    }
    let s = s.as_bytes();
    assert!(s.len().is_multiple_of(2), "odd-length hex string");
    s.chunks(2)
        .map(|p| nibble(p[0]) << 4 | nibble(p[1]))
        .collect()
}

/// A bytes expression: whitespace-separated hex tokens, each optionally `*N`.
pub fn bytes_expr(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for token in s.split_whitespace() {
        let (h, n) = match token.split_once('*') {
            Some((h, n)) => (h, n.parse::<usize>().expect("repeat count")),
            None => (token, 1),
        };
        let b = unhex(h);
        for _ in 0..n {
            out.extend_from_slice(&b);
        }
    }
    out
}

pub struct Vector {
    pub id: String,
    fields: BTreeMap<String, String>,
    used: RefCell<BTreeSet<String>>,
}

impl Vector {
    pub fn opt(&self, key: &str) -> Option<&str> {
        let v = self.fields.get(key)?;
        self.used.borrow_mut().insert(key.to_string());
        Some(v)
    }

    pub fn text(&self, key: &str) -> &str {
        self.opt(key)
            .unwrap_or_else(|| panic!("vector {}: missing `{key}`", self.id))
    }

    pub fn bytes(&self, key: &str) -> Vec<u8> {
        bytes_expr(self.text(key))
    }

    pub fn opt_bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.opt(key).map(bytes_expr)
    }

    pub fn array<const N: usize>(&self, key: &str) -> [u8; N] {
        let b = self.bytes(key);
        b.as_slice()
            .try_into()
            .unwrap_or_else(|_| panic!("vector {}: `{key}` is {} bytes, not {N}", self.id, b.len()))
    }

    pub fn int(&self, key: &str) -> u64 {
        self.text(key)
            .parse()
            .unwrap_or_else(|_| panic!("vector {}: `{key}` is not a decimal integer", self.id))
    }

    /// Every line of the block must have been checked: a typo or a stale key in
    /// the document is a failure, not silently ignored.
    pub fn assert_all_used(&self) {
        let used = self.used.borrow();
        let unused: Vec<_> = self.fields.keys().filter(|k| !used.contains(*k)).collect();
        assert!(
            unused.is_empty(),
            "vector {}: keys never checked: {unused:?}",
            self.id
        );
    }
}

pub fn load() -> Vec<Vector> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/FORMAT.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut vectors = Vec::new();
    let mut block: Option<BTreeMap<String, String>> = None;
    for (n, line) in doc.lines().enumerate() {
        let t = line.trim();
        match &mut block {
            None if t == "```vectors" => block = Some(BTreeMap::new()),
            None => {}
            Some(fields) if t == "```" => {
                let id = fields
                    .get("id")
                    .unwrap_or_else(|| panic!("vectors block ending on line {} has no id", n + 1))
                    .clone();
                let v = Vector {
                    id,
                    fields: std::mem::take(fields),
                    used: RefCell::new(BTreeSet::new()),
                };
                v.text("id");
                vectors.push(v);
                block = None;
            }
            Some(_) if t.is_empty() || t.starts_with('#') => {}
            Some(fields) => {
                let (k, v) = t
                    .split_once('=')
                    .unwrap_or_else(|| panic!("FORMAT.md line {}: expected `key = value`", n + 1));
                let old = fields.insert(k.trim().to_string(), v.trim().to_string());
                assert!(
                    old.is_none(),
                    "FORMAT.md line {}: duplicate key {}",
                    n + 1,
                    k.trim()
                );
            }
        }
    }
    assert!(block.is_none(), "unterminated vectors block in FORMAT.md");
    let mut ids = BTreeSet::new();
    for v in &vectors {
        assert!(ids.insert(v.id.clone()), "duplicate vector id {}", v.id);
    }
    vectors
}

pub fn vector<'a>(vectors: &'a [Vector], id: &str) -> &'a Vector {
    vectors
        .iter()
        .find(|v| v.id == id)
        .unwrap_or_else(|| panic!("FORMAT.md has no vector `{id}`"))
}
