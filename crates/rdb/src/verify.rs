//! Streaming verification of a whole RDB dump.
//!
//! A backup is only worth keeping if it will load, and the cheapest time to
//! find out is while it streams past on its way to storage: the verifier
//! sees each chunk once, keeps a few bytes of state plus the (bounded) head,
//! and answers at the end of the stream whether the dump is complete and
//! intact. It does not decode keys: the CRC-64 trailer already covers every
//! byte, and decoding the body would tie backups to the value types this
//! crate knows.

use crate::crc64::crc64;
use crate::error::RdbError;
use crate::head::{DEFAULT_AUX_LIMIT, HeadParser, MAGIC_LEN, Parsed};

pub use crate::head::Header;

const OPCODE_EOF: u8 = 0xff;
/// Redis writes the CRC-64 trailer from this version on.
const FIRST_CHECKSUMMED_VERSION: u32 = 5;
const TRAILER_LEN: usize = 8;

/// What the dump's trailer said about its integrity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// The trailer matched the CRC-64 of the dump, this value.
    Verified(u64),
    /// The trailer was zero: the server runs with `rdbchecksum no`, so only
    /// the EOF opcode vouches for completeness.
    Disabled,
    /// The format version predates checksums (below 5).
    Absent,
}

/// The result of verifying a complete dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// RDB format version.
    pub version: u32,
    /// Aux fields from the head, as in [`Header::aux`].
    pub aux: Vec<(String, String)>,
    /// Length of the whole dump, trailer included.
    pub bytes: u64,
    /// How far the dump's integrity could be checked.
    pub checksum: Checksum,
}

/// Checks an RDB dump fed to it in chunks of any size.
///
/// Feed every chunk to [`update`](Self::update) in order, then call
/// [`finish`](Self::finish). Errors in the head are reported by the
/// `update` that delivers the offending bytes, so a transfer that is not a
/// dump can be aborted early; after an error every later call repeats it.
pub struct Verifier {
    bytes: u64,
    tail: Tail,
    head: Option<HeadParser>,
    header: Option<Header>,
    /// Offset of the first byte after the head.
    head_end: u64,
    failed: Option<RdbError>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier that buffers at most [`DEFAULT_AUX_LIMIT`] bytes of aux
    /// fields.
    #[must_use]
    pub fn new() -> Self {
        Self::with_aux_limit(DEFAULT_AUX_LIMIT)
    }

    /// A verifier whose aux section, and each aux string, may be at most
    /// `limit` bytes: for servers known to keep large Lua scripts there.
    #[must_use]
    pub fn with_aux_limit(limit: usize) -> Self {
        Self {
            bytes: 0,
            tail: Tail::default(),
            head: Some(HeadParser::new(limit)),
            header: None,
            head_end: 0,
            failed: None,
        }
    }

    /// Takes the next chunk of the stream.
    ///
    /// # Errors
    ///
    /// [`RdbError::BadMagic`] or [`RdbError::UnsupportedVersion`] as soon as
    /// the first 9 bytes are in, [`RdbError::Malformed`] for an undecodable
    /// or oversized aux section; any earlier error again.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), RdbError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        self.tail.feed(chunk);
        if let Some(head) = &mut self.head {
            match head.feed(chunk) {
                Ok(None) => {}
                Ok(Some(Parsed { header, end })) => {
                    self.header = Some(header);
                    self.head_end = end;
                    self.head = None;
                }
                Err(e) => {
                    self.head = None;
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Bytes fed so far.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The head of the dump, once magic, version and aux fields are in.
    #[must_use]
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Ends the stream and gives the verdict.
    ///
    /// # Errors
    ///
    /// [`RdbError::Truncated`] if the stream is too short to hold head, EOF
    /// opcode and trailer, [`RdbError::MissingEof`] if the EOF opcode is not
    /// where it must be, [`RdbError::BadChecksum`] if the trailer does not
    /// match; any error `update` reported.
    pub fn finish(self) -> Result<Summary, RdbError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let truncated = RdbError::Truncated { bytes: self.bytes };
        let Some(header) = self.header else {
            return Err(truncated);
        };
        let checksummed = header.version >= FIRST_CHECKSUMMED_VERSION;
        let trailer_len = if checksummed { TRAILER_LEN as u64 } else { 0 };
        // Head, EOF opcode, trailer; never below the magic, so the
        // subtractions below cannot wrap.
        let min_len = self.head_end.max(MAGIC_LEN as u64) + 1 + trailer_len;
        if self.bytes < min_len {
            return Err(truncated);
        }
        let eof_offset = self.bytes - 1 - trailer_len;
        let checksum = if checksummed {
            let (crc, last_hashed) = self.tail.hashed();
            let eof = last_hashed.unwrap_or_default();
            if eof != OPCODE_EOF {
                return Err(RdbError::MissingEof {
                    offset: eof_offset,
                    found: eof,
                });
            }
            match u64::from_le_bytes(self.tail.window) {
                0 => Checksum::Disabled,
                expected if expected == crc => Checksum::Verified(crc),
                expected => {
                    return Err(RdbError::BadChecksum {
                        expected,
                        actual: crc,
                    });
                }
            }
        } else {
            let last = self.tail.last().unwrap_or_default();
            if last != OPCODE_EOF {
                return Err(RdbError::MissingEof {
                    offset: eof_offset,
                    found: last,
                });
            }
            Checksum::Absent
        };
        Ok(Summary {
            version: header.version,
            aux: header.aux,
            bytes: self.bytes,
            checksum,
        })
    }
}

/// Holds back the last 8 bytes seen, since only the end of the stream tells
/// whether they are the trailer, and hashes everything before them.
#[derive(Default)]
struct Tail {
    crc: u64,
    /// The last byte that went into `crc`: the EOF opcode, at the end.
    last_hashed: Option<u8>,
    window: [u8; TRAILER_LEN],
    len: usize,
}

impl Tail {
    fn feed(&mut self, chunk: &[u8]) {
        if let Some((body, last8)) = chunk
            .len()
            .checked_sub(TRAILER_LEN)
            .map(|at| chunk.split_at(at))
        {
            let held = self.window;
            self.hash(&held[..self.len]);
            self.hash(body);
            self.window.copy_from_slice(last8);
            self.len = TRAILER_LEN;
        } else {
            let overflow = (self.len + chunk.len()).saturating_sub(TRAILER_LEN);
            if overflow > 0 {
                let held = self.window;
                self.hash(&held[..overflow]);
                self.window.copy_within(overflow..self.len, 0);
                self.len -= overflow;
            }
            self.window[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
    }

    fn hash(&mut self, data: &[u8]) {
        if let Some(&last) = data.last() {
            self.crc = crc64(self.crc, data);
            self.last_hashed = Some(last);
        }
    }

    fn hashed(&self) -> (u64, Option<u8>) {
        (self.crc, self.last_hashed)
    }

    fn last(&self) -> Option<u8> {
        self.window[..self.len].last().copied()
    }
}

#[cfg(test)]
mod tests;
