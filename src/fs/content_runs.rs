//! Runs of sealed pages: splitting page lists into runs, the per-thread run
//! buffer, and handing a run's pages to one or both cores.

use rayon::prelude::*;

use super::{CIPHER_PAGE, PAR_MIN_PAGES, RUN_PAGES};
use crate::fs::cache::wipe;

/// Pages per parallel piece for a run of `n`: one piece per thread of the pool
/// (each hand-off costs a wake-up; finer pieces only added scheduling).
fn par_piece(n: u64) -> usize {
    (n as usize)
        .div_ceil(rayon::current_num_threads().max(1))
        .max(PAR_MIN_PAGES / 2)
}

/// Call `f(k, slot)` for slot `k` of each page of a run of `n` pages in `buf`
/// (`CIPHER_PAGE` bytes apart), on both cores when `par` allows it and the run
/// is long enough.
pub(super) fn each_page<E: Send>(
    buf: &mut [u8],
    n: u64,
    par: bool,
    f: impl Fn(usize, &mut [u8]) -> Result<(), E> + Sync + Send,
) -> Result<(), E> {
    if !par || (n as usize) < PAR_MIN_PAGES {
        buf.chunks_mut(CIPHER_PAGE as usize)
            .enumerate()
            .try_for_each(|(k, slot)| f(k, slot))
    } else {
        buf.par_chunks_mut(CIPHER_PAGE as usize)
            .enumerate()
            .with_min_len(par_piece(n))
            .try_for_each(|(k, slot)| f(k, slot))
    }
}

/// Consecutive page indexes of `pages` (ascending) as runs of at most
/// `RUN_PAGES`: `(first, count)`.
pub(super) fn runs(pages: impl IntoIterator<Item = u64>) -> impl Iterator<Item = (u64, u64)> {
    let mut it = pages.into_iter().peekable();
    std::iter::from_fn(move || {
        let first = it.next()?;
        let mut n = 1;
        while n < RUN_PAGES && it.peek() == Some(&(first + n)) {
            it.next();
            n += 1;
        }
        Some((first, n))
    })
}

thread_local! {
    /// Each thread's buffer for a run of sealed pages, reused from request to
    /// request (allocating and zero-filling a run per request showed in `perf`).
    static RUN_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Call `f` with this thread's run buffer, `len` bytes long (contents
/// unspecified), and wipe it afterwards: it holds plaintext at times. Never
/// nested.
pub(super) fn with_run_buf<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    with_cipher_buf(len, |b| {
        let r = f(b);
        wipe(b);
        r
    })
}

/// [`with_run_buf`] for a use that never puts plaintext in the buffer (pages
/// sealed from elsewhere into it): no wipe.
pub(super) fn with_cipher_buf<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    RUN_BUF.with(|b| {
        let mut b = b.borrow_mut();
        if b.len() < len {
            b.resize(len, 0);
        }
        f(&mut b[..len])
    })
}
