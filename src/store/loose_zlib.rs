//! The zlib stream of a loose blob object: data stored uncompressed, runs of
//! zero bytes deflated.
//!
//! Ciphertext does not compress, and deflating it took half of a commit's
//! time, so a blob's bytes go into stored blocks (`stage.rs`). The hole slots
//! of a sparse blob (`format::holes`) are zeros, though: stored, a 1 GiB
//! sparse file would take 1 GiB of objects. Here each aligned 4 KiB piece of
//! the input that is all zeros is counted, not compressed, and each run of
//! them is written as deflate segments made once: 1 MiB of zeros deflated (level 9) on
//! its own (reused for every whole MiB), and the rest likewise. Data goes
//! through a compressor at level 0, which only stores. Every segment ends on
//! a sync flush (byte-aligned, not final) and none refers back past its own
//! start, so they concatenate into one raw deflate stream. It follows the
//! zlib header (78 01) and ends with a final empty stored block and the
//! Adler-32 of the input (RFC 1950/1951). Git and libgit2 read it as any
//! loose object. A 1 GiB hole takes about 1 MiB.

use std::io::{self, Write};

use flate2::{Compress, Compression, FlushCompress};

/// Pieces looked at for zeros (the input is cut at multiples of this).
const PIECE: usize = 4096;
/// Zero runs are written a unit at a time from one segment deflated once
/// (each segment stands alone, so the same bytes serve every unit).
const ZERO_UNIT: usize = 1 << 20;
/// RFC 1950's Adler-32 modulus, and the most bytes summed before reducing.
const MOD: u32 = 65521;
const NMAX: usize = 5552;

/// A zlib writer that stores data and deflates zero runs.
pub struct HoleZlib<W: Write> {
    out: W,
    stored: Compress,
    buf: Vec<u8>,
    /// Adler-32 sums of the input so far.
    a: u32,
    b: u32,
    started: bool,
    /// Zeros read but not written yet (a run goes out whole).
    pending: u64,
    /// The deflated segment of `ZERO_UNIT` zeros, once made.
    unit: Option<Vec<u8>>,
    /// The start of a piece whose rest has not come yet.
    tail: Vec<u8>,
}

impl<W: Write> HoleZlib<W> {
    pub fn new(out: W) -> HoleZlib<W> {
        HoleZlib {
            out,
            stored: Compress::new(Compression::none(), false),
            buf: Vec::with_capacity(1 << 17),
            a: 1,
            b: 0,
            started: false,
            unit: None,
            pending: 0,
            tail: Vec::with_capacity(PIECE),
        }
    }

    fn start(&mut self) -> io::Result<()> {
        if !self.started {
            self.out.write_all(&[0x78, 0x01])?;
            self.started = true;
        }
        Ok(())
    }

    /// Write the zeros counted so far: whole units from the one deflated
    /// segment, the rest deflated on its own.
    fn zeros_out(&mut self) -> io::Result<()> {
        let mut n = std::mem::take(&mut self.pending);
        if n == 0 {
            return Ok(());
        }
        self.start()?;
        self.adler_zeros(n);
        while n >= ZERO_UNIT as u64 {
            let unit = match self.unit.take() {
                Some(u) => u,
                None => deflate_zeros(ZERO_UNIT)?,
            };
            self.out.write_all(&unit)?;
            self.unit = Some(unit);
            n -= ZERO_UNIT as u64;
        }
        if n > 0 {
            let rest = deflate_zeros(n as usize)?;
            self.out.write_all(&rest)?;
        }
        Ok(())
    }

    /// Data: stored, sync-flushed, after the zeros before it.
    fn stored(&mut self, input: &[u8]) -> io::Result<()> {
        self.zeros_out()?;
        self.start()?;
        let z = &mut self.stored;
        for (part, flush) in [(input, FlushCompress::None), (&[][..], FlushCompress::Sync)] {
            let mut part = part;
            loop {
                self.buf.clear();
                let before = z.total_in();
                z.compress_vec(part, &mut self.buf, flush)
                    .map_err(io::Error::other)?;
                part = &part[(z.total_in() - before) as usize..];
                self.out.write_all(&self.buf)?;
                if part.is_empty() && self.buf.len() < self.buf.capacity() {
                    break;
                }
            }
        }
        self.adler(input);
        Ok(())
    }

    /// a stays; b grows by a for each zero byte.
    fn adler_zeros(&mut self, n: u64) {
        let n = n % MOD as u64;
        self.b = ((self.b as u64 + self.a as u64 * n) % MOD as u64) as u32;
    }

    fn adler(&mut self, input: &[u8]) {
        for chunk in input.chunks(NMAX) {
            for &x in chunk {
                self.a += x as u32;
                self.b += self.a;
            }
            self.a %= MOD;
            self.b %= MOD;
        }
    }

    /// End the stream (a final empty stored block, then the checksum) and
    /// give back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let tail = std::mem::take(&mut self.tail);
        self.pieces(&tail)?;
        self.zeros_out()?;
        self.start()?;
        self.out.write_all(&[0x01, 0x00, 0x00, 0xff, 0xff])?;
        let sum = (self.b << 16) | self.a;
        self.out.write_all(&sum.to_be_bytes())?;
        Ok(self.out)
    }
}

/// `n` zeros as a stand-alone raw deflate segment, sync-flushed.
fn deflate_zeros(n: usize) -> io::Result<Vec<u8>> {
    let mut z = Compress::new(Compression::best(), false);
    let zeros = vec![0u8; n];
    let mut out = Vec::with_capacity(n / 256 + 1024);
    z.compress_vec(&zeros, &mut out, FlushCompress::Sync)
        .map_err(io::Error::other)?;
    if z.total_in() != n as u64 || out.len() == out.capacity() {
        return Err(io::Error::other("deflating zeros did not finish"));
    }
    Ok(out)
}

impl<W: Write> HoleZlib<W> {
    /// Write `data` as runs of whole pieces (a short one only at the end).
    fn pieces(&mut self, data: &[u8]) -> io::Result<()> {
        let zero = |p: &[u8]| p.len() == PIECE && p.iter().all(|b| *b == 0);
        let mut at = 0;
        while at < data.len() {
            let kind = zero(&data[at..(at + PIECE).min(data.len())]);
            let mut end = at;
            while end < data.len() && zero(&data[end..(end + PIECE).min(data.len())]) == kind {
                end = (end + PIECE).min(data.len());
            }
            if kind {
                self.pending += (end - at) as u64;
            } else {
                self.stored(&data[at..end])?;
            }
            at = end;
        }
        Ok(())
    }
}

impl<W: Write> Write for HoleZlib<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let len = data.len();
        if !self.tail.is_empty() {
            let n = (PIECE - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.tail.len() < PIECE {
                return Ok(len);
            }
            let piece = std::mem::take(&mut self.tail);
            self.pieces(&piece)?;
            self.tail = piece;
            self.tail.clear();
        }
        let whole = data.len() / PIECE * PIECE;
        self.pieces(&data[..whole])?;
        self.tail.extend_from_slice(&data[whole..]);
        Ok(len)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn zero_runs_shrink_and_everything_inflates_back() {
        let mut data = vec![0u8; (8 << 20) + 12345];
        for (i, b) in data[..10_000].iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8 | 1;
        }
        data[5 << 20] = 9;
        data.extend_from_slice(&[3u8; 5000]);
        let mut z = HoleZlib::new(Vec::new());
        for chunk in data.chunks(100_000) {
            z.write_all(chunk).unwrap();
        }
        let out = z.finish().unwrap();
        assert!(out.len() < 64 << 10, "{} bytes", out.len());
        let mut back = Vec::new();
        flate2::read::ZlibDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // Data without zeros is stored: about its own length.
        let mut z = HoleZlib::new(Vec::new());
        z.write_all(&data[..10_000]).unwrap();
        let out = z.finish().unwrap();
        assert!(out.len() >= 10_000 && out.len() < 10_100, "{}", out.len());
    }
}
