//! On-disk formats, pure and unit-tested: no file I/O happens here.
//!
//! * [`offsets`]: page arithmetic of content blobs.
//! * [`blob`]: blob header and page encryption.
//! * [`holes`]: hole slots of a version 2 blob.
//! * [`names`]: file-name encryption, long names and name validation.
//! * [`modes`]: the mode record of a backing directory.
//! * [`tags`]: the tag list of a committed blob, for checking it page by page.

pub mod blob;
pub mod holes;
pub mod links;
pub mod modes;
pub mod names;
pub mod offsets;
pub mod tags;
