//! Writing an RDB dump from `DUMP` payloads.
//!
//! A `DUMP` payload is the value exactly as an RDB file stores it — type
//! byte, then the value's serialization — followed by a footer of the RDB
//! version (2 bytes, little endian) and a CRC-64 of everything before it.
//! An RDB entry is the same type byte, then the key, then the same value
//! bytes. So a dump can be assembled from payloads without decoding a
//! single value: check each footer, cut it off, put the key after the type
//! byte. `FUNCTION DUMP` payloads hold `FUNCTION2` opcodes in the same
//! framing and go in as they are.
//!
//! The writer appends to a buffer the caller drains, so it stays free of
//! I/O like the rest of the crate.

use crate::crc64::crc64;

const OP_FUNCTION2: u8 = 0xf5;
const OP_AUX: u8 = 0xfa;
const OP_RESIZEDB: u8 = 0xfb;
const OP_EXPIRETIME_MS: u8 = 0xfc;
const OP_SELECTDB: u8 = 0xfe;
const OP_EOF: u8 = 0xff;
/// RDB version (2 bytes) and CRC-64 (8 bytes) after a payload.
const FOOTER: usize = 10;

/// Why a `DUMP` payload cannot go into the dump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("a DUMP payload of {0} bytes is too short to hold a value and its footer")]
    TooShort(usize),
    #[error("a DUMP payload's CRC-64 does not match its bytes; it was damaged in transit")]
    BadChecksum,
    #[error("a DUMP payload of RDB version {found} in a dump of version {expected}")]
    VersionMismatch { expected: u32, found: u32 },
    #[error("a FUNCTION DUMP payload holds opcode {0:#04x}, not FUNCTION2")]
    NotFunctions(u8),
}

/// The RDB version a `DUMP` or `FUNCTION DUMP` payload was serialized
/// with, after checking its footer. (`FUNCTION DUMP` of a server without
/// libraries is a bare footer.)
pub fn payload_version(payload: &[u8]) -> Result<u32, PayloadError> {
    let body_len = payload
        .len()
        .checked_sub(FOOTER)
        .ok_or(PayloadError::TooShort(payload.len()))?;
    let (version, crc) = payload[body_len..].split_at(2);
    let mut crc_bytes = [0u8; 8];
    crc_bytes.copy_from_slice(crc);
    if crc64(0, &payload[..body_len + 2]) != u64::from_le_bytes(crc_bytes) {
        return Err(PayloadError::BadChecksum);
    }
    Ok(u32::from(u16::from_le_bytes([version[0], version[1]])))
}

/// Assembles a dump; every byte written is also hashed into the trailer.
pub struct Writer {
    buf: Vec<u8>,
    /// CRC-64 of the bytes already drained.
    crc: u64,
    version: u32,
}

impl Writer {
    /// Starts a dump of RDB `version` (that of the payloads that will go in).
    pub fn new(version: u32) -> Writer {
        let mut w = Writer {
            buf: Vec::with_capacity(64 * 1024),
            crc: 0,
            version,
        };
        w.buf
            .extend_from_slice(format!("REDIS{version:04}").as_bytes());
        w
    }

    pub fn aux(&mut self, key: &str, value: &str) {
        self.buf.push(OP_AUX);
        self.string(key.as_bytes());
        self.string(value.as_bytes());
    }

    /// Starts database `db`, sized so that loading it allocates once.
    pub fn select_db(&mut self, db: u64, keys: u64, expires: u64) {
        self.buf.push(OP_SELECTDB);
        self.length(db);
        self.buf.push(OP_RESIZEDB);
        self.length(keys);
        self.length(expires);
    }

    /// Adds the libraries of a `FUNCTION DUMP` payload (none when it is empty).
    pub fn functions(&mut self, payload: &[u8]) -> Result<(), PayloadError> {
        let body = self.checked_body(payload)?;
        match body.first() {
            None => {}
            Some(&OP_FUNCTION2) => self.buf.extend_from_slice(body),
            Some(&other) => return Err(PayloadError::NotFunctions(other)),
        }
        Ok(())
    }

    /// Adds `key` with the value of its `DUMP` payload and, when it has one,
    /// its absolute expiry in unix milliseconds.
    pub fn entry(
        &mut self,
        key: &[u8],
        expire_at_ms: Option<i64>,
        payload: &[u8],
    ) -> Result<(), PayloadError> {
        let body = self.checked_body(payload)?;
        if body.is_empty() {
            return Err(PayloadError::TooShort(payload.len()));
        }
        if let Some(at) = expire_at_ms {
            self.buf.push(OP_EXPIRETIME_MS);
            self.buf.extend_from_slice(&at.to_le_bytes());
        }
        self.buf.push(body[0]);
        self.string(key);
        self.buf.extend_from_slice(&body[1..]);
        Ok(())
    }

    /// Bytes written since the last call; hashed, then handed out.
    pub fn drain(&mut self) -> Vec<u8> {
        self.crc = crc64(self.crc, &self.buf);
        std::mem::take(&mut self.buf)
    }

    /// Bytes waiting to be drained.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The EOF opcode and the CRC-64 trailer: the last bytes of the dump.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(OP_EOF);
        let crc = crc64(self.crc, &self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }

    fn checked_body<'p>(&self, payload: &'p [u8]) -> Result<&'p [u8], PayloadError> {
        let found = payload_version(payload)?;
        if found != self.version {
            return Err(PayloadError::VersionMismatch {
                expected: self.version,
                found,
            });
        }
        Ok(&payload[..payload.len() - FOOTER])
    }

    fn string(&mut self, s: &[u8]) {
        self.length(s.len() as u64);
        self.buf.extend_from_slice(s);
    }

    fn length(&mut self, n: u64) {
        length(&mut self.buf, n);
    }
}

/// RDB length encoding, in the shortest form as Redis writes it: 6, 14, 32
/// or 64 bits.
pub(crate) fn length(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else if let Ok(n) = u32::try_from(n) {
        out.push(0x80);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Reader, Value, dump_payload};

    #[test]
    fn a_dump_from_payloads_reads_back() {
        let big = vec![b'k'; 20_000];
        let mut w = Writer::new(10);
        w.aux("redis-ver", "7.0.15");
        w.select_db(0, 2, 1);
        // Type 0, a string "hello" as RDB stores it.
        let p = dump_payload(0, b"\x05hello", 10);
        w.entry(b"a", Some(1_900_000_000_000), &p).expect("entry");
        let mut out = w.drain();
        w.entry(&big, None, &p).expect("entry");
        w.select_db(70_000, 1, 0);
        w.entry(b"b", None, &p).expect("entry");
        out.extend(w.drain());
        out.extend(w.finish());

        let mut r = Reader::new(&out[..]).expect("header");
        let e = r.next_entry().expect("ok").expect("entry");
        assert_eq!(
            (e.db, &e.key[..], e.expire_ms),
            (0, &b"a"[..], Some(1_900_000_000_000))
        );
        assert_eq!(e.value, Value::String(b"hello".to_vec()));
        let e = r.next_entry().expect("ok").expect("entry");
        assert_eq!(e.key, big);
        let e = r.next_entry().expect("ok").expect("entry");
        assert_eq!((e.db, &e.key[..]), (70_000, &b"b"[..]));
        assert!(r.next_entry().expect("ok").is_none());
        assert!(r.checksum().is_some());
    }

    #[test]
    fn bad_payloads_are_refused() {
        let mut w = Writer::new(10);
        let mut p = dump_payload(0, b"\x05hello", 10);
        assert_eq!(
            w.entry(b"a", None, &dump_payload(0, b"\x01x", 9)),
            Err(PayloadError::VersionMismatch {
                expected: 10,
                found: 9
            })
        );
        p[3] ^= 1;
        assert_eq!(w.entry(b"a", None, &p), Err(PayloadError::BadChecksum));
        assert_eq!(w.entry(b"a", None, &p[..5]), Err(PayloadError::TooShort(5)));
        // FUNCTION DUMP without libraries: a bare footer, nothing to add.
        let mut bare = 10u16.to_le_bytes().to_vec();
        bare.extend_from_slice(&crate::crc64::crc64(0, &bare).to_le_bytes());
        w.functions(&bare).expect("no libraries");
        assert_eq!(w.entry(b"a", None, &bare), Err(PayloadError::TooShort(10)));
        assert_eq!(
            w.functions(&dump_payload(0, b"\x01x", 10)),
            Err(PayloadError::NotFunctions(0))
        );
    }
}
