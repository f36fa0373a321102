//! Throughput of `rdb::crc64` (SIMD for long inputs) and of the
//! slicing-by-16 table it uses for short ones, against the textbook
//! byte-at-a-time table.
//!
//! Plain `std::time`, no harness: one line of output is all that is needed
//! to decide whether checksumming can keep up with a backup stream.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rdb::crc64::{POLY_REFLECTED, crc64, slicing_by_16};

const LEN: usize = 256 << 20;
const ROUNDS: usize = 3;

/// The one-table, one-byte-per-step CRC most implementations start from.
struct Bytewise([u64; 256]);

impl Bytewise {
    fn new() -> Self {
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut crc = i as u64;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ POLY_REFLECTED
                } else {
                    crc >> 1
                };
            }
            *slot = crc;
        }
        Self(t)
    }

    fn crc(&self, mut crc: u64, data: &[u8]) -> u64 {
        for &b in data {
            crc = self.0[((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
        crc
    }
}

/// Best of `ROUNDS` runs, in GB/s (10^9 bytes), and the checksum.
fn best(data: &[u8], f: impl Fn(&[u8]) -> u64) -> (f64, u64) {
    let mut fastest = Duration::MAX;
    let mut sum = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        sum = black_box(f(black_box(data)));
        fastest = fastest.min(start.elapsed());
    }
    (data.len() as f64 / fastest.as_secs_f64() / 1e9, sum)
}

fn main() {
    // Pseudo-random, so nothing about the input can be special-cased.
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    let data: Vec<u8> = (0..LEN / 8)
        .flat_map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s.to_le_bytes()
        })
        .collect();

    let table = Bytewise::new();
    let (fast, a) = best(&data, |d| crc64(0, d));
    let (sliced, b) = best(&data, |d| slicing_by_16(0, d));
    let (slow, c) = best(&data, |d| table.crc(0, d));
    assert!(a == b && b == c, "implementations disagree");
    println!(
        "crc64: {fast:.2} GB/s; slicing-by-16 {sliced:.2} GB/s; bytewise baseline {slow:.2} GB/s; \
         ratio {:.1}x ({} MiB, best of {ROUNDS})",
        fast / slow,
        LEN >> 20
    );
}
