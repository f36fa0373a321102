//! The compact containers Redis stores as one RDB string: ziplist,
//! listpack, intset and zipmap.
//!
//! Each decoder takes the whole (already decompressed) blob, checks every
//! length against it before reading, and fails with a reason the caller
//! places at the blob's offset. Integers come out as their decimal text,
//! which is how Redis hands them to clients.

/// Why a blob is invalid.
pub(crate) type Reason = String;

/// Field-value (or member-score text) pairs.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A bounds-checked reader over one blob.
struct Bytes<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Bytes<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    fn short(&self) -> Reason {
        format!(
            "{} of {} bytes ends in the middle of an entry at byte {}",
            self.what,
            self.buf.len(),
            self.pos
        )
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Reason> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.short())?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| self.short())?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Reason> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn byte(&mut self) -> Result<u8, Reason> {
        Ok(self.array::<1>()?[0])
    }

    fn peek(&self) -> Result<u8, Reason> {
        self.buf.get(self.pos).copied().ok_or_else(|| self.short())
    }

    fn u16_le(&mut self) -> Result<u16, Reason> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32_le(&mut self) -> Result<u32, Reason> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// The header's total-length field must match the blob's length.
    fn check_total(&self, total: u32) -> Result<(), Reason> {
        if u64::from(total) == self.buf.len() as u64 {
            Ok(())
        } else {
            Err(format!(
                "{} header announces {total} bytes but the string holds {}",
                self.what,
                self.buf.len()
            ))
        }
    }

    /// After the 0xFF terminator nothing may follow.
    fn check_end(&self) -> Result<(), Reason> {
        if self.at_end() {
            Ok(())
        } else {
            Err(format!(
                "{} has {} bytes after its end marker",
                self.what,
                self.buf.len() - self.pos
            ))
        }
    }
}

fn int(v: i64) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// One element of a compact container, as stored: bytes, or an integer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Elem<'a> {
    Bytes(&'a [u8]),
    Int(i64),
}

impl Elem<'_> {
    /// As Redis hands it to clients: integers as decimal text.
    fn to_vec(self) -> Vec<u8> {
        match self {
            Elem::Bytes(b) => b.to_vec(),
            Elem::Int(v) => int(v),
        }
    }
}

fn check_count(what: &str, announced: u16, found: usize) -> Result<(), Reason> {
    // u16::MAX means "too many to count" in both ziplist and listpack.
    if announced != u16::MAX && usize::from(announced) != found {
        return Err(format!(
            "{what} header announces {announced} entries but holds {found}"
        ));
    }
    Ok(())
}

const END: u8 = 0xff;

/// Walks a ziplist (Redis < 7 lists, hashes and sorted sets), handing
/// each element to `f`; returns how many there were.
pub(crate) fn walk_ziplist<'a>(
    blob: &'a [u8],
    mut f: impl FnMut(Elem<'a>),
) -> Result<usize, Reason> {
    let mut b = Bytes::new(blob, "ziplist");
    let total = b.u32_le()?;
    b.check_total(total)?;
    let _tail = b.u32_le()?;
    let count = b.u16_le()?;
    let mut n = 0usize;
    loop {
        if b.peek()? == END {
            b.byte()?;
            break;
        }
        // prevlen: one byte, or 0xFE and four more.
        if b.byte()? == 0xfe {
            b.take(4)?;
        }
        let e = b.byte()?;
        let value = match e >> 6 {
            0 => Elem::Bytes(b.take(usize::from(e & 0x3f))?),
            1 => {
                let n = (usize::from(e & 0x3f) << 8) | usize::from(b.byte()?);
                Elem::Bytes(b.take(n)?)
            }
            2 => {
                let n = u32::from_be_bytes(b.array()?);
                Elem::Bytes(b.take(usize::try_from(n).map_err(|_| b.short())?)?)
            }
            _ => Elem::Int(match e {
                0xc0 => i64::from(i16::from_le_bytes(b.array()?)),
                0xd0 => i64::from(i32::from_le_bytes(b.array()?)),
                0xe0 => i64::from_le_bytes(b.array()?),
                0xf0 => {
                    let [x, y, z] = b.array()?;
                    i64::from(i32::from_le_bytes([0, x, y, z]) >> 8)
                }
                0xfe => i64::from(i8::from_le_bytes(b.array()?)),
                0xf1..=0xfd => i64::from(e & 0x0f) - 1,
                _ => return Err(format!("ziplist entry has unknown encoding {e:#04x}")),
            }),
        };
        f(value);
        n += 1;
    }
    b.check_end()?;
    check_count("ziplist", count, n)?;
    Ok(n)
}

/// Decodes a ziplist.
pub(crate) fn ziplist(blob: &[u8]) -> Result<Vec<Vec<u8>>, Reason> {
    let mut out = Vec::with_capacity(header_count(blob, 8));
    walk_ziplist(blob, |e| out.push(e.to_vec()))?;
    Ok(out)
}

/// The element count a header announces at `at`, capped, for preallocation.
fn header_count(blob: &[u8], at: usize) -> usize {
    blob.get(at..at + 2)
        .map_or(0, |c| usize::from(u16::from_le_bytes([c[0], c[1]])))
        .min(1024)
}

/// Size of a listpack entry's back-length field for an entry of `len`
/// bytes (encoding plus data), as lpEncodeBacklen computes it.
fn backlen_size(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..16_383 => 2,
        16_383..2_097_151 => 3,
        2_097_151..268_435_455 => 4,
        _ => 5,
    }
}

/// Walks a listpack (Redis >= 7 small hashes, sets, sorted sets, list
/// nodes, and stream nodes), handing each element to `f`; returns how many
/// there were.
pub(crate) fn walk_listpack<'a>(
    blob: &'a [u8],
    mut f: impl FnMut(Elem<'a>),
) -> Result<usize, Reason> {
    let mut b = Bytes::new(blob, "listpack");
    let total = b.u32_le()?;
    b.check_total(total)?;
    let count = b.u16_le()?;
    let mut n = 0usize;
    loop {
        let start = b.pos;
        let e = b.byte()?;
        let value = if e & 0x80 == 0 {
            Elem::Int(i64::from(e & 0x7f))
        } else if e & 0xc0 == 0x80 {
            Elem::Bytes(b.take(usize::from(e & 0x3f))?)
        } else if e & 0xe0 == 0xc0 {
            let v = (i64::from(e & 0x1f) << 8) | i64::from(b.byte()?);
            Elem::Int(if v >= 1 << 12 { v - (1 << 13) } else { v })
        } else if e & 0xf0 == 0xe0 {
            let n = (usize::from(e & 0x0f) << 8) | usize::from(b.byte()?);
            Elem::Bytes(b.take(n)?)
        } else {
            match e {
                0xf0 => {
                    let n = b.u32_le()?;
                    Elem::Bytes(b.take(usize::try_from(n).map_err(|_| b.short())?)?)
                }
                0xf1 => Elem::Int(i64::from(i16::from_le_bytes(b.array()?))),
                0xf2 => {
                    let [x, y, z] = b.array()?;
                    Elem::Int(i64::from(i32::from_le_bytes([0, x, y, z]) >> 8))
                }
                0xf3 => Elem::Int(i64::from(i32::from_le_bytes(b.array()?))),
                0xf4 => Elem::Int(i64::from_le_bytes(b.array()?)),
                END => break,
                _ => return Err(format!("listpack entry has unknown encoding {e:#04x}")),
            }
        };
        b.take(backlen_size(b.pos - start))?;
        f(value);
        n += 1;
    }
    b.check_end()?;
    check_count("listpack", count, n)?;
    Ok(n)
}

/// Decodes a listpack.
pub(crate) fn listpack(blob: &[u8]) -> Result<Vec<Vec<u8>>, Reason> {
    let mut out = Vec::with_capacity(header_count(blob, 4));
    walk_listpack(blob, |e| out.push(e.to_vec()))?;
    Ok(out)
}

/// Checks an intset's header against its size: (integer width, count).
fn intset_header(blob: &[u8]) -> Result<(u32, u32), Reason> {
    let mut b = Bytes::new(blob, "intset");
    let width = b.u32_le()?;
    let len = b.u32_le()?;
    if !matches!(width, 2 | 4 | 8) {
        return Err(format!("intset has invalid integer width {width}"));
    }
    let expected = u64::from(len) * u64::from(width) + 8;
    if expected != blob.len() as u64 {
        return Err(format!(
            "intset of {len} {width}-byte integers must be {expected} bytes, not {}",
            blob.len()
        ));
    }
    Ok((width, len))
}

/// How many integers an intset holds.
pub(crate) fn intset_len(blob: &[u8]) -> Result<usize, Reason> {
    Ok(intset_header(blob)?.1 as usize)
}

/// Decodes an intset (small sets of integers).
pub(crate) fn intset(blob: &[u8]) -> Result<Vec<Vec<u8>>, Reason> {
    let (width, len) = intset_header(blob)?;
    let mut b = Bytes::new(blob, "intset");
    b.take(8)?;
    let mut out = Vec::with_capacity((len as usize).min(1024));
    while !b.at_end() {
        let v = match width {
            2 => i64::from(i16::from_le_bytes(b.array()?)),
            4 => i64::from(i32::from_le_bytes(b.array()?)),
            _ => i64::from_le_bytes(b.array()?),
        };
        out.push(int(v));
    }
    Ok(out)
}

/// Decodes a zipmap (hashes of Redis < 2.6) into field-value pairs.
pub(crate) fn zipmap(blob: &[u8]) -> Result<Pairs, Reason> {
    fn len(b: &mut Bytes<'_>) -> Result<usize, Reason> {
        match b.byte()? {
            254 => usize::try_from(b.u32_le()?).map_err(|_| b.short()),
            END => Err("zipmap ends between a field and its value".to_owned()),
            n => Ok(usize::from(n)),
        }
    }
    let mut b = Bytes::new(blob, "zipmap");
    let _count = b.byte()?;
    let mut out = Vec::new();
    loop {
        if b.peek()? == END {
            b.byte()?;
            break;
        }
        let n = len(&mut b)?;
        let field = b.take(n)?.to_vec();
        let n = len(&mut b)?;
        let free = usize::from(b.byte()?);
        let value = b.take(n)?.to_vec();
        b.take(free)?;
        out.push((field, value));
    }
    b.check_end()?;
    Ok(out)
}

/// Splits a flat list into pairs; an odd count is an error.
pub(crate) fn pairs(what: &str, flat: Vec<Vec<u8>>) -> Result<Pairs, Reason> {
    if !flat.len().is_multiple_of(2) {
        return Err(format!(
            "{what} holds {} elements, not a whole number of pairs",
            flat.len()
        ));
    }
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(entries: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        for e in entries {
            body.extend_from_slice(e);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&((body.len() + 7) as u32).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&body);
        out.push(0xff);
        out
    }

    #[test]
    fn listpack_encodings() {
        let big = vec![b'z'; 200];
        let mut e12 = vec![0xe0, 200];
        e12.extend_from_slice(&big);
        e12.extend_from_slice(&[0, 0]); // two backlen bytes for 202
        let blob = lp(&[
            &[0x05, 1],                   // 7-bit uint 5
            &[0x83, b'a', b'b', b'c', 4], // 6-bit string
            &[0xdf, 0xff, 2],             // 13-bit -1
            &e12,
            &[0xf1, 0x00, 0x80, 3],             // i16 min
            &[0xf2, 0xff, 0xff, 0x7f, 4],       // i24 max
            &[0xf3, 0x00, 0x00, 0x00, 0x80, 5], // i32 min
            &[0xf4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 9], // i64 max
        ]);
        let v = listpack(&blob).unwrap();
        assert_eq!(v[0], b"5");
        assert_eq!(v[1], b"abc");
        assert_eq!(v[2], b"-1");
        assert_eq!(v[3], big);
        assert_eq!(v[4], b"-32768");
        assert_eq!(v[5], b"8388607");
        assert_eq!(v[6], b"-2147483648");
        assert_eq!(v[7], i64::MAX.to_string().as_bytes());
        // Every truncation or wrong total fails; none panics.
        for cut in 0..blob.len() {
            assert!(listpack(&blob[..cut]).is_err());
        }
    }

    fn zl(entries: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        for e in entries {
            body.push(0); // prevlen, unchecked
            body.extend_from_slice(e);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&((body.len() + 11) as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&body);
        out.push(0xff);
        out
    }

    #[test]
    fn ziplist_encodings() {
        let blob = zl(&[
            &[0x02, b'h', b'i'],
            &[0x40, 0x01, b'x'],
            &[0x80, 0, 0, 0, 1, b'y'],
            &[0xc0, 0xff, 0x7f],
            &[0xd0, 0, 0, 0, 0x80],
            &[0xe0, 1, 0, 0, 0, 0, 0, 0, 0],
            &[0xf0, 0, 0, 0x80],
            &[0xfe, 0x80],
            &[0xf1],
            &[0xfd],
        ]);
        let v = ziplist(&blob).unwrap();
        let want: Vec<&[u8]> = vec![
            b"hi",
            b"x",
            b"y",
            b"32767",
            b"-2147483648",
            b"1",
            b"-8388608",
            b"-128",
            b"0",
            b"12",
        ];
        assert_eq!(v, want);
        for cut in 0..blob.len() {
            assert!(ziplist(&blob[..cut]).is_err());
        }
    }

    #[test]
    fn intset_and_zipmap() {
        let mut blob = vec![2, 0, 0, 0, 2, 0, 0, 0];
        blob.extend_from_slice(&(-5i16).to_le_bytes());
        blob.extend_from_slice(&7i16.to_le_bytes());
        assert_eq!(intset(&blob).unwrap(), vec![b"-5".to_vec(), b"7".to_vec()]);
        assert!(intset(&blob[..blob.len() - 1]).is_err());
        blob[0] = 3;
        assert!(intset(&blob).is_err());

        let zm = [
            2, 3, b'f', b'o', b'o', 3, 2, b'b', b'a', b'r', 0, 0, 1, b'k', 0, 0, 0xff,
        ];
        assert_eq!(
            zipmap(&zm).unwrap(),
            vec![
                (b"foo".to_vec(), b"bar".to_vec()),
                (b"k".to_vec(), Vec::new())
            ]
        );
        for cut in 0..zm.len() {
            assert!(zipmap(&zm[..cut]).is_err());
        }
    }

    #[test]
    fn arbitrary_blobs_do_not_panic() {
        let mut s: u64 = 7;
        for _ in 0..20_000 {
            let data: Vec<u8> = (0..24)
                .map(|_| {
                    s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (s >> 56) as u8
                })
                .collect();
            let _ = ziplist(&data);
            let _ = listpack(&data);
            let _ = intset(&data);
            let _ = zipmap(&data);
        }
    }
}
