//! Page encryption throughput, with OpenSSL's AES-256-GCM as the reference.
//!
//! `cargo bench --bench page_crypto` prints `openssl speed -evp aes-256-gcm` for
//! 4096-byte blocks first (when `openssl` is installed), then runs the criterion
//! groups, then compares pkfs's single-thread page sealing rate with OpenSSL's.
//! Rates in the summary lines are in MB/s (10^6 bytes per second), the unit
//! `openssl speed` uses; criterion reports MiB/s or GiB/s.
//!
//! Under `cargo test --benches` (criterion's test mode) each benchmark runs once
//! and the OpenSSL reference and the comparison are skipped.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use pkfs::crypto::SymKey;
use pkfs::format::blob::{self, FileCipher, Header};

const PAGE: usize = 4096;
const BLOB: usize = 1 << 20;

fn key() -> SymKey {
    SymKey::from_bytes(std::array::from_fn(|i| i as u8))
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn bench_pages(c: &mut Criterion) {
    let key = key();
    let header = Header::new(0);
    let fc = FileCipher::new(&key, &header);
    let plain = plaintext(PAGE);
    // Page 7 of a longer file: a full mid-file page, sealed with final = false.
    let sealed = fc.seal_page(7, false, &plain);

    let mut g = c.benchmark_group("page_4KiB");
    g.throughput(Throughput::Bytes(PAGE as u64));
    g.bench_function("seal", |b| {
        b.iter(|| fc.seal_page(black_box(7), black_box(false), black_box(&plain)))
    });
    g.bench_function("open", |b| {
        b.iter(|| {
            fc.open_page(black_box(7), black_box(false), black_box(&sealed))
                .unwrap()
        })
    });
    // What the mount does: seal in the write-back buffer, no allocation.
    let mut slot = vec![0u8; PAGE + 28];
    slot[28..].copy_from_slice(&plain);
    g.bench_function("seal_in_place", |b| {
        b.iter(|| fc.seal_page_in_place((black_box(7), black_box(false), 0), &[3; 12], &mut slot))
    });
    g.finish();
}

fn bench_blobs(c: &mut Criterion) {
    let key = key();
    let header = Header::new(0);
    let plain = plaintext(BLOB);
    let sealed = blob::seal(&key, &header, &plain);

    let mut g = c.benchmark_group("blob_1MiB");
    g.throughput(Throughput::Bytes(BLOB as u64));
    g.bench_function("seal", |b| {
        b.iter(|| blob::seal(&key, black_box(&header), black_box(&plain)))
    });
    g.bench_function("open", |b| {
        b.iter(|| {
            blob::open(|_| Some(&key), black_box(&sealed))
                .unwrap()
                .unwrap()
        })
    });
    g.finish();
}

/// `openssl speed -evp aes-256-gcm -bytes 4096 -seconds 1`: the result line and
/// the rate in MB/s, or `None` when openssl is missing or its output is not
/// understood.
fn openssl_reference() -> Option<f64> {
    let out = match Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "aes-256-gcm",
            "-bytes",
            "4096",
            "-seconds",
            "1",
        ])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            println!("reference: openssl is missing ({e}); no comparison");
            return None;
        }
    };
    if !out.status.success() {
        println!(
            "reference: `openssl speed` failed ({}); no comparison",
            out.status
        );
        return None;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The table's row: "AES-256-GCM    2422960.13k", in 1000s of bytes per second.
    let line = stdout
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("aes-256-gcm"));
    let Some(line) = line else {
        println!("reference: no AES-256-GCM row in `openssl speed` output; no comparison");
        return None;
    };
    let kbps = line
        .split_whitespace()
        .last()
        .and_then(|v| v.strip_suffix('k'))
        .and_then(|v| v.parse::<f64>().ok());
    let Some(kbps) = kbps else {
        println!("reference: cannot read the rate in {line:?}; no comparison");
        return None;
    };
    let mbps = kbps / 1000.0;
    println!("reference: openssl speed -evp aes-256-gcm -bytes 4096 -seconds 1");
    println!("reference:   {}", line.trim());
    println!("reference:   = {mbps:.1} MB/s for 4096-byte blocks");
    Some(mbps)
}

/// pkfs's own single-thread rate of `FileCipher::seal_page` on 4 KiB pages,
/// in MB/s, timed directly (about one second).
fn measure_seal_mbps() -> f64 {
    let key = key();
    let fc = FileCipher::new(&key, &Header::new(0));
    let plain = plaintext(PAGE);
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        black_box(fc.seal_page(black_box(0), black_box(false), black_box(&plain)));
    }
    let start = Instant::now();
    let mut pages = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..256 {
            black_box(fc.seal_page(black_box(pages), black_box(false), black_box(&plain)));
            pages += 1;
        }
    }
    (pages * PAGE as u64) as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// The same with `FileCipher::seal_page_in_place`, the mount's write-back path.
fn measure_seal_in_place_mbps() -> f64 {
    let key = key();
    let fc = FileCipher::new(&key, &Header::new(0));
    let mut slot = vec![0u8; PAGE + 28];
    slot[28..].copy_from_slice(&plaintext(PAGE));
    let iv = [5u8; 12];
    let start = Instant::now();
    let mut pages = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..256 {
            fc.seal_page_in_place(
                (black_box(pages), black_box(false), 0),
                &iv,
                black_box(&mut slot),
            );
            pages += 1;
        }
    }
    (pages * PAGE as u64) as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    // The same rule as criterion: without `--bench` (cargo test --benches), or
    // with `--test` or `--list`, nothing is measured.
    let measuring = has("--bench") && !has("--test") && !has("--list");

    let reference = if measuring { openssl_reference() } else { None };

    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20)
        .configure_from_args();
    bench_pages(&mut c);
    bench_blobs(&mut c);
    c.final_summary();

    if measuring {
        let pkfs = measure_seal_mbps();
        let in_place = measure_seal_in_place_mbps();
        println!("comparison: pkfs seal_page_in_place 4 KiB = {in_place:.1} MB/s");
        if let Some(ossl) = reference {
            println!("comparison: in place / openssl = {:.2}", in_place / ossl);
        }
        match reference {
            Some(ossl) => println!(
                "comparison: pkfs seal_page 4 KiB = {pkfs:.1} MB/s, openssl aes-256-gcm 4096 B = \
                 {ossl:.1} MB/s, ratio pkfs/openssl = {:.2}",
                pkfs / ossl
            ),
            None => {
                println!("comparison: pkfs seal_page 4 KiB = {pkfs:.1} MB/s (no openssl reference)")
            }
        }
    }
}
