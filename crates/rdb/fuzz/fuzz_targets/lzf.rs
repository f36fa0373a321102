//! `rdb::lzf::decompress` on arbitrary blocks: it never panics, what it
//! returns is exactly `expected_len` bytes long, and it accepts exactly the
//! blocks that liblzf's `lzf_decompress` expands without error to
//! `expected_len` bytes, giving the same bytes.
//!
//! Input layout: 2 bytes (u16 little-endian) `expected_len`, then the
//! compressed block. The reference below is a transcription of liblzf's
//! `lzf_d.c` (with its bounds checks, `CHECK_INPUT` on) over a fixed-size
//! output buffer, written independently of the crate's decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// liblzf's `lzf_decompress`: the number of bytes written to `out`, or `None`
/// where liblzf returns 0 with `E2BIG` (output full) or `EINVAL` (corrupt).
fn reference(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let (mut ip, mut op) = (0usize, 0usize);
    // liblzf's loop is a do-while that would read `input[0]` of an empty
    // block; Redis never hands it one, an empty block expands to nothing.
    while ip < input.len() {
        let mut ctrl = usize::from(input[ip]);
        ip += 1;
        if ctrl < (1 << 5) {
            ctrl += 1;
            if op + ctrl > out.len() {
                return None; // E2BIG
            }
            if ip + ctrl > input.len() {
                return None; // EINVAL
            }
            out[op..op + ctrl].copy_from_slice(&input[ip..ip + ctrl]);
            ip += ctrl;
            op += ctrl;
        } else {
            let mut len = ctrl >> 5;
            // `ref = op - ((ctrl & 0x1f) << 8) - 1`, as a signed distance.
            let mut back = ((ctrl & 0x1f) << 8) + 1;
            if ip >= input.len() {
                return None; // EINVAL
            }
            if len == 7 {
                len += usize::from(input[ip]);
                ip += 1;
                if ip >= input.len() {
                    return None; // EINVAL
                }
            }
            back += usize::from(input[ip]);
            ip += 1;
            if op + len + 2 > out.len() {
                return None; // E2BIG
            }
            if back > op {
                return None; // EINVAL: ref < out_data
            }
            len += 2;
            for _ in 0..len {
                out[op] = out[op - back];
                op += 1;
            }
        }
    }
    Some(op)
}

fuzz_target!(|data: &[u8]| {
    let Some((len, block)) = data.split_first_chunk::<2>() else {
        return;
    };
    let expected_len = usize::from(u16::from_le_bytes(*len));
    let got = rdb::lzf::decompress(block, expected_len);
    if let Ok(out) = &got {
        assert_eq!(out.len(), expected_len, "output length");
    }

    let mut buf = vec![0u8; expected_len];
    let want = match reference(block, &mut buf) {
        Some(n) if n == expected_len => Some(buf),
        _ => None,
    };
    match (got, want) {
        (Ok(out), Some(want)) => assert!(out == want, "decoded bytes differ from liblzf's"),
        (Err(_), None) => {}
        (Ok(_), None) => panic!("decompress accepted a block liblzf refuses"),
        (Err(e), Some(_)) => panic!("decompress refused a block liblzf accepts: {e}"),
    }
});
