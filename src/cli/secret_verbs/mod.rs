//! The secret commands a pass or gopass user reaches for first: `secret
//! edit` (an editor on a copy in a private tmpfs), `secret generate` (random
//! passwords and word phrases), `--clip` (the clipboard, cleared after 45
//! seconds) and `secret grep` (a regular expression over decrypted contents).
//!
//! `generate` and `grep` are ordinary commands, run by the daemon when the
//! home is mounted. `edit` and the clipboard belong to the user's session, so
//! the client does them itself: `edit` reads and writes through the daemon
//! (or the vault, unmounted) and runs the editor here; `--clip` takes what the
//! command printed and hands it to the clipboard tool here.

pub mod clip;
pub mod edit;
pub mod generate;
pub mod grep;
pub mod steps;
