//! RDB length and string encodings (rdb.h), decoded from a buffer that may
//! not hold all of them yet.
//!
//! The header arrives in chunks cut wherever the socket cut them, so instead
//! of failing on a short buffer every reader here reports how many bytes it
//! needs ([`Stop::Need`]); the caller waits for that many before trying
//! again, which keeps byte-by-byte feeding linear rather than quadratic.

use std::borrow::Cow;

use crate::error::RdbError;
use crate::lzf;

/// Why decoding stopped short of a value.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The buffer must hold at least this many bytes (counted from its
    /// start) before the value can be decoded.
    Need(usize),
    /// The bytes are invalid; more data will not help.
    Fail(RdbError),
}

impl From<RdbError> for Stop {
    fn from(e: RdbError) -> Self {
        Self::Fail(e)
    }
}

/// A length, or the marker of a specially encoded string (`0b11xxxxxx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Length {
    Plain(u64),
    Encoded(u8),
}

const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;
/// The most bytes one byte of LZF data can expand to (a 3-byte
/// back-reference yields 264).
const MAX_LZF_RATIO: u64 = 88;

/// A read position in a buffer that starts at stream offset 0, so positions
/// double as the offsets reported in errors.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Self { buf, pos }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn byte(&mut self) -> Result<u8, Stop> {
        let b = *self.buf.get(self.pos).ok_or(Stop::Need(self.pos + 1))?;
        self.pos += 1;
        Ok(b)
    }

    /// Looks at the next byte without consuming it.
    pub(crate) fn peek(&self) -> Result<u8, Stop> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(Stop::Need(self.pos + 1))
    }

    /// Everything from `from` up to the current position.
    pub(crate) fn since(&self, from: usize) -> &'a [u8] {
        self.buf.get(from..self.pos).unwrap_or_default()
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let a = *self
            .buf
            .get(self.pos..)
            .and_then(<[u8]>::first_chunk::<N>)
            .ok_or(Stop::Need(self.pos + N))?;
        self.pos += N;
        Ok(a)
    }

    /// Takes `n` bytes, `n` having come from the stream and so being
    /// untrusted: a length no buffer could hold is malformed, any other
    /// becomes a `Need` the caller's size limit (or the end of the input)
    /// decides on. The verdict depends on `n` alone, not on where the buffer
    /// happens to start, so the same dump fails the same way however its
    /// reads are split.
    pub(crate) fn take(&mut self, n: u64) -> Result<&'a [u8], Stop> {
        // A buffer holds at most isize::MAX bytes, so `pos` is below that
        // and `pos + n` cannot overflow.
        let end = usize::try_from(n)
            .ok()
            .filter(|&n| n <= isize::MAX as usize)
            .map(|n| self.pos + n)
            .ok_or_else(|| RdbError::malformed(self.pos, format!("length {n} is out of range")))?;
        let bytes = self.buf.get(self.pos..end).ok_or(Stop::Need(end))?;
        self.pos = end;
        Ok(bytes)
    }

    fn length(&mut self) -> Result<Length, Stop> {
        let start = self.pos;
        let b = self.byte()?;
        match b >> 6 {
            0 => Ok(Length::Plain(u64::from(b & 0x3f))),
            1 => Ok(Length::Plain(
                (u64::from(b & 0x3f) << 8) | u64::from(self.byte()?),
            )),
            3 => Ok(Length::Encoded(b & 0x3f)),
            _ => match b {
                0x80 => Ok(Length::Plain(u64::from(u32::from_be_bytes(self.array()?)))),
                0x81 => Ok(Length::Plain(u64::from_be_bytes(self.array()?))),
                _ => Err(RdbError::malformed(
                    start,
                    format!("unknown length encoding byte {b:#04x}"),
                )
                .into()),
            },
        }
    }

    pub(crate) fn plain_length(&mut self) -> Result<u64, Stop> {
        let start = self.pos;
        match self.length()? {
            Length::Plain(n) => Ok(n),
            Length::Encoded(_) => Err(RdbError::malformed(
                start,
                "an encoded value stands where a length was expected",
            )
            .into()),
        }
    }

    /// Reads an RDB string of at most `max` bytes once decoded; `max` also
    /// bounds the one allocation an LZF string makes.
    pub(crate) fn string(&mut self, max: usize) -> Result<Vec<u8>, Stop> {
        self.string_ref(max).map(Cow::into_owned)
    }

    /// [`string`](Self::string), borrowing from the buffer unless the
    /// string had to be decompressed or rendered from an integer.
    pub(crate) fn string_ref(&mut self, max: usize) -> Result<Cow<'a, [u8]>, Stop> {
        match self.stored_string(max)? {
            Stored::Bytes(b) => Ok(Cow::Borrowed(b)),
            Stored::Int(v) => Ok(Cow::Owned(v.to_string().into_bytes())),
            Stored::Lzf { data, at, len } => lzf::decompress(data, len)
                .map(Cow::Owned)
                .map_err(|e| RdbError::malformed(at, e.reason()).into()),
        }
    }

    /// Steps over a string, checked as [`string`](Self::string) checks it
    /// (an LZF block too), but neither copied nor decompressed.
    pub(crate) fn skip_string(&mut self, max: usize) -> Result<(), Stop> {
        match self.stored_string(max)? {
            Stored::Bytes(_) | Stored::Int(_) => Ok(()),
            Stored::Lzf { data, at, len } => {
                lzf::check(data, len).map_err(|e| RdbError::malformed(at, e.reason()).into())
            }
        }
    }

    /// A string as the dump stores it.
    fn stored_string(&mut self, max: usize) -> Result<Stored<'a>, Stop> {
        let start = self.pos;
        let too_long = |n: u64| {
            Stop::Fail(RdbError::malformed(
                start,
                format!("a string of {n} bytes exceeds the {max}-byte limit"),
            ))
        };
        match self.length()? {
            Length::Plain(n) => {
                if n > max as u64 {
                    return Err(too_long(n));
                }
                Ok(Stored::Bytes(self.take(n)?))
            }
            Length::Encoded(ENC_INT8) => Ok(Stored::Int(i8::from_le_bytes(self.array()?).into())),
            Length::Encoded(ENC_INT16) => Ok(Stored::Int(i16::from_le_bytes(self.array()?).into())),
            Length::Encoded(ENC_INT32) => Ok(Stored::Int(i32::from_le_bytes(self.array()?).into())),
            Length::Encoded(ENC_LZF) => {
                let compressed = self.plain_length()?;
                let original = self.plain_length()?;
                if original > max as u64 {
                    return Err(too_long(original));
                }
                if compressed > max as u64 {
                    return Err(too_long(compressed));
                }
                // One LZF instruction of at most 3 bytes expands to at most
                // 264, so a claim beyond that ratio is corrupt; checking it
                // keeps the allocation below proportional to bytes received.
                if original > compressed.saturating_mul(MAX_LZF_RATIO) {
                    return Err(RdbError::malformed(
                        start,
                        format!(
                            "{compressed} bytes of LZF data cannot expand to the announced {original} bytes"
                        ),
                    )
                    .into());
                }
                let at = self.pos;
                let data = self.take(compressed)?;
                // `original <= max`, a usize, so the cast is lossless.
                Ok(Stored::Lzf {
                    data,
                    at,
                    len: original as usize,
                })
            }
            Length::Encoded(other) => {
                Err(RdbError::malformed(start, format!("unknown string encoding {other}")).into())
            }
        }
    }
}

/// A string as stored: plain bytes, an integer, or an LZF block (at its
/// offset, with its decompressed length).
enum Stored<'a> {
    Bytes(&'a [u8]),
    Int(i64),
    Lzf {
        data: &'a [u8],
        at: usize,
        len: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(buf: &[u8]) -> Result<(Vec<u8>, usize), Stop> {
        let mut c = Cursor::new(buf, 0);
        let s = c.string(1 << 20)?;
        Ok((s, c.pos()))
    }

    fn ok(buf: &[u8]) -> Vec<u8> {
        let (s, used) = read(buf).unwrap();
        assert_eq!(used, buf.len(), "whole buffer consumed");
        s
    }

    fn need(buf: &[u8]) -> usize {
        match read(buf) {
            Err(Stop::Need(n)) => n,
            other => panic!("expected Need, got {other:?}"),
        }
    }

    fn fail(buf: &[u8]) -> RdbError {
        match read(buf) {
            Err(Stop::Fail(e)) => e,
            other => panic!("expected Fail, got {other:?}"),
        }
    }

    #[test]
    fn six_bit_length() {
        assert_eq!(ok(b"\x03abc"), b"abc");
        assert_eq!(ok(b"\x00"), b"");
    }

    #[test]
    fn fourteen_bit_length() {
        let mut buf = vec![0x41, 0x2c]; // 0x12c = 300
        buf.extend(std::iter::repeat_n(b'x', 300));
        assert_eq!(ok(&buf).len(), 300);
    }

    #[test]
    fn thirty_two_and_sixty_four_bit_lengths_are_big_endian() {
        let mut buf = vec![0x80, 0, 0, 0x01, 0x00];
        buf.extend(std::iter::repeat_n(b'y', 256));
        assert_eq!(ok(&buf).len(), 256);
        let mut buf = vec![0x81, 0, 0, 0, 0, 0, 0, 0, 0x05];
        buf.extend_from_slice(b"hello");
        assert_eq!(ok(&buf), b"hello");
    }

    #[test]
    fn integer_encodings_render_as_decimal() {
        assert_eq!(ok(&[0xc0, 0x40]), b"64");
        assert_eq!(ok(&[0xc0, 0xff]), b"-1");
        assert_eq!(ok(&[0xc1, 0x39, 0x30]), b"12345");
        assert_eq!(ok(&[0xc1, 0x00, 0x80]), b"-32768");
        assert_eq!(ok(&[0xc2, 0x15, 0xcd, 0x5b, 0x07]), b"123456789");
        assert_eq!(ok(&[0xc2, 0x00, 0x00, 0x00, 0x80]), b"-2147483648");
    }

    #[test]
    fn lzf_string() {
        let mut buf = vec![0xc3, 0x05, 0x0a, 0x00, b'a', 0xe0, 0x00, 0x00];
        assert_eq!(ok(&buf), vec![b'a'; 10]);
        buf[2] = 0x0b; // announce 11 bytes, data yields 10
        assert!(matches!(fail(&buf), RdbError::Malformed { offset: 3, .. }));
    }

    #[test]
    fn lzf_claiming_impossible_expansion_fails_before_allocating() {
        // 2 bytes of data announced to expand to 2^40 bytes.
        let buf = [0xc3, 0x02, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0, b'a', b'b'];
        let mut c = Cursor::new(&buf, 0);
        assert!(matches!(c.string(usize::MAX), Err(Stop::Fail(_))));
    }

    #[test]
    fn short_buffers_report_what_they_need() {
        assert_eq!(need(b""), 1);
        assert_eq!(need(b"\x03ab"), 4);
        assert_eq!(need(b"\x41"), 2);
        assert_eq!(need(b"\x80\x00"), 5);
        assert_eq!(need(b"\x81"), 9);
        assert_eq!(need(b"\xc2\x01"), 5);
        assert_eq!(need(b"\xc3\x05"), 3);
        assert_eq!(need(b"\xc3\x05\x0a\x00"), 8);
    }

    #[test]
    fn oversized_and_unknown_encodings_fail() {
        assert!(matches!(
            fail(b"\x81\xff\xff\xff\xff\xff\xff\xff\xff"),
            RdbError::Malformed { offset: 0, .. }
        ));
        assert!(matches!(
            fail(b"\x80\x7f\xff\xff\xff"),
            RdbError::Malformed { .. }
        ));
        assert!(matches!(
            fail(b"\xc3\x05\x80\x7f\xff\xff\xff"),
            RdbError::Malformed { .. }
        ));
        assert!(matches!(
            fail(b"\xc3\xc0\x01"),
            RdbError::Malformed { offset: 1, .. }
        ));
        assert!(matches!(fail(b"\x82"), RdbError::Malformed { .. }));
        assert!(matches!(fail(b"\xc4"), RdbError::Malformed { .. }));
    }

    /// Every byte string up to three bytes long, and random longer ones,
    /// decode, ask for more, or fail; none panics.
    #[test]
    fn arbitrary_bytes_do_not_panic() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let _ = read(&[a, b]);
                let _ = read(&[a, b, a ^ b]);
            }
        }
        let mut s: u64 = 99;
        for _ in 0..20_000 {
            let data: Vec<u8> = (0..12)
                .map(|_| {
                    s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (s >> 56) as u8
                })
                .collect();
            let _ = read(&data);
        }
    }
}
