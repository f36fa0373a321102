//! LZF decompression, the only compression the RDB format uses for strings.
//!
//! The input comes straight off the network from a server we do not trust to
//! be healthy, so every read and every back-reference is bounds-checked and
//! the output never grows past the length the stream announced: a corrupt or
//! hostile dump gets an error, never a panic or an unbounded allocation.

/// Why a compressed block could not be decoded; the caller adds the offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LzfError {
    /// A literal run or a back-reference header runs past the input.
    InputOverrun,
    /// The data would expand past the announced uncompressed length.
    OutputOverrun,
    /// A back-reference points before the start of the output.
    BadReference,
    /// The data expands to fewer bytes than announced.
    ShortOutput,
}

impl LzfError {
    /// What is wrong, in words.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Self::InputOverrun => "LZF data ends in the middle of an instruction",
            Self::OutputOverrun => "LZF data expands past its announced length",
            Self::BadReference => "LZF back-reference points before the start of the output",
            Self::ShortOutput => "LZF data expands to fewer bytes than announced",
        }
    }
}

impl std::fmt::Display for LzfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for LzfError {}

/// Decompresses `input`, which must expand to exactly `expected_len` bytes
/// (Redis rejects anything else too). The caller caps `expected_len` before
/// calling, since it is the size of the one allocation made here.
///
/// # Errors
///
/// [`LzfError`] for any input that is not exactly such a block.
pub fn decompress(input: &[u8], expected_len: usize) -> Result<Vec<u8>, LzfError> {
    let mut out = Vec::with_capacity(expected_len);
    expand(input, expected_len, &mut out)?;
    Ok(out)
}

/// Checks that `input` is a block [`decompress`] would accept, without
/// producing its output: whether a block is valid depends only on lengths
/// and distances, never on the bytes it expands to.
///
/// # Errors
///
/// As [`decompress`].
pub fn check(input: &[u8], expected_len: usize) -> Result<(), LzfError> {
    expand(input, expected_len, &mut Measure(0))
}

/// Where an expansion goes: the bytes themselves, or just their count.
trait Output {
    fn len(&self) -> usize;
    fn literal(&mut self, bytes: &[u8]);
    /// Appends `len` bytes copied from `start` on, which may overlap what
    /// is being appended.
    fn repeat(&mut self, start: usize, len: usize);
}

impl Output for Vec<u8> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn literal(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn repeat(&mut self, start: usize, len: usize) {
        // Overlap is how LZF encodes runs: the copy repeats the last
        // `distance` bytes, so copy what exists, then twice that, and so
        // on, rather than one byte at a time.
        let mut left = len;
        while left > 0 {
            let n = left.min(Vec::len(self) - start);
            self.extend_from_within(start..start + n);
            left -= n;
        }
    }
}

struct Measure(usize);

impl Output for Measure {
    fn len(&self) -> usize {
        self.0
    }

    fn literal(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }

    fn repeat(&mut self, _start: usize, len: usize) {
        self.0 += len;
    }
}

fn expand(input: &[u8], expected_len: usize, out: &mut impl Output) -> Result<(), LzfError> {
    let mut ip = 0usize;
    while ip < input.len() {
        let ctrl = usize::from(input[ip]);
        ip += 1;
        if ctrl < 32 {
            // Literal run of ctrl + 1 bytes.
            let run = ctrl + 1;
            let lit = input.get(ip..ip + run).ok_or(LzfError::InputOverrun)?;
            if run > expected_len - out.len() {
                return Err(LzfError::OutputOverrun);
            }
            out.literal(lit);
            ip += run;
        } else {
            // Back-reference: 3 bits of length (7 = read one more byte),
            // 13 bits of distance split across ctrl and the next byte.
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*input.get(ip).ok_or(LzfError::InputOverrun)?);
                ip += 1;
            }
            let low = usize::from(*input.get(ip).ok_or(LzfError::InputOverrun)?);
            ip += 1;
            let distance = ((ctrl & 0x1f) << 8) + low + 1;
            let len = len + 2;
            if len > expected_len - out.len() {
                return Err(LzfError::OutputOverrun);
            }
            let start = out
                .len()
                .checked_sub(distance)
                .ok_or(LzfError::BadReference)?;
            out.repeat(start, len);
        }
    }
    if out.len() == expected_len {
        Ok(())
    } else {
        Err(LzfError::ShortOutput)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_only() {
        assert_eq!(decompress(b"\x02abc", 3).unwrap(), b"abc");
    }

    #[test]
    fn empty() {
        assert_eq!(decompress(b"", 0).unwrap(), b"");
        assert_eq!(decompress(b"", 1), Err(LzfError::ShortOutput));
    }

    #[test]
    fn overlapping_back_reference_encodes_a_run() {
        // "a" then copy 9 bytes from distance 1: ten 'a's.
        // len field 7 -> extra byte: 7 + 0 + 2 = 9.
        let data = [0x00, b'a', 0xe0, 0x00, 0x00];
        assert_eq!(decompress(&data, 10).unwrap(), vec![b'a'; 10]);
        // Short form: len field 1 -> 3 bytes, distance 2.
        let data = [0x01, b'a', b'b', 0x20, 0x01];
        assert_eq!(decompress(&data, 5).unwrap(), b"ababa");
    }

    /// The shape liblzf gives repeated text: a literal, then one long
    /// back-reference (here 30 bytes at distance 10).
    #[test]
    fn redis_style_repetition() {
        let mut data = vec![0x09];
        data.extend_from_slice(b"abcdefghij");
        data.extend_from_slice(&[0xe0, 30 - 2 - 7, 9]);
        let out = decompress(&data, 40).unwrap();
        assert_eq!(out, b"abcdefghij".repeat(4));
    }

    #[test]
    fn rejects_literal_past_input() {
        assert_eq!(decompress(b"\x05ab", 6), Err(LzfError::InputOverrun));
    }

    #[test]
    fn rejects_truncated_back_reference() {
        assert_eq!(
            decompress(&[0x00, b'a', 0x20], 4),
            Err(LzfError::InputOverrun)
        );
        assert_eq!(
            decompress(&[0x00, b'a', 0xe0], 4),
            Err(LzfError::InputOverrun)
        );
        assert_eq!(
            decompress(&[0x00, b'a', 0xe0, 0x00], 4),
            Err(LzfError::InputOverrun)
        );
    }

    #[test]
    fn rejects_reference_before_start() {
        assert_eq!(
            decompress(&[0x00, b'a', 0x20, 0x05], 4),
            Err(LzfError::BadReference)
        );
        assert_eq!(decompress(&[0x20, 0x00], 3), Err(LzfError::BadReference));
    }

    #[test]
    fn never_exceeds_announced_length() {
        assert_eq!(decompress(b"\x02abc", 2), Err(LzfError::OutputOverrun));
        let data = [0x00, b'a', 0xe0, 0xff, 0x00];
        assert_eq!(decompress(&data, 10), Err(LzfError::OutputOverrun));
        assert_eq!(decompress(b"\x02abc", 4), Err(LzfError::ShortOutput));
    }

    /// Every short input decodes or errors; none panics.
    #[test]
    fn arbitrary_inputs_do_not_panic() {
        let mut s: u32 = 1;
        for round in 0..20_000 {
            let len = round % 24;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (s >> 16) as u8
                })
                .collect();
            for expected in [0, 1, 7, 64, 300] {
                let out = decompress(&data, expected);
                if let Ok(out) = &out {
                    assert_eq!(out.len(), expected);
                }
                assert_eq!(check(&data, expected), out.map(drop), "{data:?}");
            }
        }
    }

    /// The plain byte-by-byte reading of the format, to check the chunked
    /// copy of overlapping back-references against.
    fn reference(input: &[u8]) -> Vec<u8> {
        let (mut out, mut ip) = (Vec::new(), 0);
        while ip < input.len() {
            let ctrl = usize::from(input[ip]);
            ip += 1;
            if ctrl < 32 {
                out.extend_from_slice(&input[ip..=ip + ctrl]);
                ip += ctrl + 1;
            } else {
                let mut len = ctrl >> 5;
                if len == 7 {
                    len += usize::from(input[ip]);
                    ip += 1;
                }
                let start = out.len() - (((ctrl & 0x1f) << 8) + usize::from(input[ip]) + 1);
                ip += 1;
                for i in start..start + len + 2 {
                    out.push(out[i]);
                }
            }
        }
        out
    }

    #[test]
    fn chunked_copies_match_byte_by_byte() {
        let mut s: u64 = 7;
        let mut next = |m: usize| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % m as u64) as usize
        };
        for _ in 0..2_000 {
            // A valid stream: a literal first, then literals and references
            // of every length to any distance that exists.
            let (mut input, mut produced) = (vec![3, 1, 2, 3, 4], 4usize);
            for _ in 0..next(40) {
                if next(3) == 0 {
                    let run = next(32);
                    input.push(run as u8);
                    input.extend((0..=run).map(|i| i as u8));
                    produced += run + 1;
                } else {
                    let distance = 1 + next(produced.min(8192));
                    let len = 1 + next(262); // 0 would be a literal
                    let d = distance - 1;
                    if len < 7 {
                        input.extend([((len as u8) << 5) | (d >> 8) as u8, d as u8]);
                    } else {
                        input.extend([(7 << 5) | (d >> 8) as u8, (len - 7) as u8, d as u8]);
                    }
                    produced += len + 2;
                }
            }
            let want = reference(&input);
            assert_eq!(want.len(), produced);
            assert_eq!(decompress(&input, produced), Ok(want));
        }
    }
}
