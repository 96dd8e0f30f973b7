//! Serving a big committed file page by page against its blob's tag list
//! (`format::tags`), instead of hashing it whole on its first open.
//!
//! On open for reading (`FsCore::open`), when HEAD names blob B for the file
//! and an authentic tag list of B is saved: the blob's length and header are
//! compared with the list now, and every page read from disk must carry the
//! listed tag, besides passing its GCM check (`read_run`). So each byte served
//! is the committed byte, or the read fails with EIO at the first page that is
//! not.
//!
//! Before anything changes the file (a write, a truncation, an append), the
//! whole blob is hashed and must still be B, and the list is dropped: the pages
//! a change does not rewrite are then known to be HEAD's, as they are after a
//! whole check on open. Without that, a tampered page that nobody read would be
//! carried into the next commit.

use std::io;
use std::sync::Arc;

use super::{eio, FileState};
use crate::format::blob::Header;
use crate::format::offsets::{self, CIPHER_PAGE, IV_LEN, TAG_LEN};
use crate::format::tags::TagList;
use crate::store::seal::{blob_id_of_file, raw_id};

impl FileState {
    /// Check pages against `list` from now on; its length and header must be
    /// this blob's, as `open_with` read them (a decoded header determines its
    /// bytes, and a plain size its blob length).
    pub fn expect_tags(&mut self, list: Arc<TagList>) -> io::Result<()> {
        let same_header = match (&self.cipher, Header::decode(&list.header)) {
            (Some((mine, _)), Ok(listed)) => *mine == listed,
            _ => false,
        };
        if offsets::blob_len(self.disk_size) != list.blob_len || !same_header {
            tracing::warn!("an open file's blob does not match its committed tag list");
            return Err(eio());
        }
        self.tags = Some(list);
        Ok(())
    }

    /// Is this file checked page by page?
    pub fn checked_by_tags(&self) -> bool {
        self.tags.is_some()
    }

    /// Pages `first..first + n` as read from disk into `buf` (still sealed):
    /// each must carry its listed tag.
    pub(super) fn check_tags(&self, first: u64, n: u64, buf: &[u8]) -> io::Result<()> {
        let Some(list) = &self.tags else {
            return Ok(());
        };
        for k in 0..n {
            let at = (k * CIPHER_PAGE + IV_LEN) as usize;
            let got = buf.get(at..at + TAG_LEN as usize);
            if got.is_none() || list.tag(first + k).map(|t| &t[..]) != got {
                tracing::warn!(
                    "page {} of an open file is not the committed one",
                    first + k
                );
                return Err(eio());
            }
        }
        Ok(())
    }

    /// Before a change (and before it is journaled, or the next commit would
    /// adopt what was never checked): hash the whole blob, which must still be
    /// the listed one, and stop checking by tags.
    pub fn settle_tags(&mut self) -> io::Result<()> {
        let Some(list) = &self.tags else {
            return Ok(());
        };
        let id = blob_id_of_file(&self.file, list.blob_len, None)?;
        if raw_id(id) != list.blob_id {
            tracing::warn!("an open file's blob is not the committed one");
            return Err(eio());
        }
        self.tags = None;
        Ok(())
    }

    /// A truncation to zero keeps nothing of the blob: no need to hash it.
    pub(super) fn drop_tags(&mut self) {
        self.tags = None;
    }
}
