//! The head of an RDB dump: magic, version and the aux fields after them.
//!
//! This is the only part of the dump the verifier decodes, because it is
//! what an operator wants in a backup's metadata (server version, creation
//! time, memory use) and what tells early that a stream is not a dump at
//! all. It is buffered in full, so its size is bounded.

use crate::error::RdbError;
use crate::string::{Cursor, Stop};

/// `REDIS` plus four ASCII digits, or `VALKEY` plus three.
pub(crate) const MAGIC_LEN: usize = 9;
const OPCODE_AUX: u8 = 0xfa;

/// The highest `REDIS`-magic version accepted (Redis 7.4 to 8.2 write 12).
pub const MAX_VERSION: u32 = 12;
/// The `VALKEY`-magic versions accepted: Valkey 9.0 writes 80, 9.2 81.
/// Valkey gives this magic only to versions above 79, leaving 12 to 79 to
/// Redis; a `VALKEY` dump of a lower version is not one Valkey wrote.
pub const VALKEY_VERSIONS: std::ops::RangeInclusive<u32> = 80..=81;

/// Which server family wrote the dump, from its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    /// `REDIS` and four digits (Redis, and Valkey up to 8).
    Redis,
    /// `VALKEY` and three digits (Valkey 9 and later).
    Valkey,
}

/// Checks the magic and version as far as `seen` (the first bytes of a
/// dump) goes: `Ok(None)` while it is a prefix of a valid magic, so that a
/// stream that is plainly something else (an error page, a wrong port)
/// fails at its first byte.
pub(crate) fn magic(seen: &[u8]) -> Result<Option<(Magic, u32)>, RdbError> {
    let seen = &seen[..seen.len().min(MAGIC_LEN)];
    let families: [(&[u8], Magic, std::ops::RangeInclusive<u32>); 2] = [
        (b"REDIS", Magic::Redis, 1..=MAX_VERSION),
        (b"VALKEY", Magic::Valkey, VALKEY_VERSIONS),
    ];
    for (word, magic, versions) in families {
        let n = seen.len().min(word.len());
        if seen[..n] != word[..n] {
            continue;
        }
        let digits = &seen[n..];
        if !digits.iter().all(u8::is_ascii_digit) {
            break;
        }
        if seen.len() < MAGIC_LEN {
            return Ok(None);
        }
        let version = digits
            .iter()
            .fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
        return if versions.contains(&version) {
            Ok(Some((magic, version)))
        } else {
            Err(RdbError::UnsupportedVersion(version))
        };
    }
    Err(RdbError::BadMagic {
        found: seen.escape_ascii().to_string(),
    })
}

/// Default bound on the aux section, and on any one aux string in it. Aux
/// fields are a few hundred bytes in practice; Redis 4 to 6 also put Lua
/// scripts there, hence room to spare, but not so much that a hostile or
/// garbled stream can make us buffer without end.
pub const DEFAULT_AUX_LIMIT: usize = 1 << 20;

/// Version and aux fields from the start of a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Which family wrote the dump.
    pub magic: Magic,
    /// The RDB format version: 1..=12 (`REDIS`), 80..=81 (`VALKEY`).
    pub version: u32,
    /// Aux fields in the order written. Values stored as integers appear as
    /// their decimal text; non-UTF-8 bytes are replaced, since these fields
    /// are informational and meant to be shown.
    pub aux: Vec<(String, String)>,
}

impl Header {
    /// The value of the first aux field named `key`.
    #[must_use]
    pub fn aux_value(&self, key: &str) -> Option<&str> {
        self.aux
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The version of the server that wrote the dump: `redis-ver`, which
    /// Valkey up to 8 writes too, or Valkey 9's `valkey-ver`.
    #[must_use]
    pub fn redis_ver(&self) -> Option<&str> {
        self.aux_value("redis-ver")
            .or_else(|| self.aux_value("valkey-ver"))
    }

    /// 32 or 64: the word size of the server that wrote the dump.
    #[must_use]
    pub fn redis_bits(&self) -> Option<u32> {
        self.aux_value("redis-bits")?.parse().ok()
    }

    /// When the dump was started, in seconds since the Unix epoch.
    #[must_use]
    pub fn ctime(&self) -> Option<u64> {
        self.aux_value("ctime")?.parse().ok()
    }

    /// The server's memory use when the dump started, in bytes.
    #[must_use]
    pub fn used_mem(&self) -> Option<u64> {
        self.aux_value("used-mem")?.parse().ok()
    }
}

/// Accumulates the head of the stream until it can be decoded.
pub(crate) struct HeadParser {
    buf: Vec<u8>,
    /// Start of the first field not yet decoded.
    pos: usize,
    /// Decoding is not retried before `buf` holds this many bytes.
    need: usize,
    /// Known once the magic has been checked.
    version: Option<u32>,
    magic: Magic,
    aux: Vec<(String, String)>,
    aux_limit: usize,
    /// `buf` never grows past this.
    cap: usize,
}

/// A decoded head and the offset of the first byte after it.
pub(crate) struct Parsed {
    pub(crate) header: Header,
    pub(crate) end: u64,
}

impl HeadParser {
    pub(crate) fn new(aux_limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            need: 1,
            version: None,
            magic: Magic::Redis,
            aux: Vec::new(),
            aux_limit,
            // The magic, the aux section, and the opcode that ends it.
            cap: MAGIC_LEN.saturating_add(aux_limit).saturating_add(1),
        }
    }

    /// Takes the next bytes of the stream; returns the head once complete.
    /// Bytes past what the head can need are ignored.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<Option<Parsed>, RdbError> {
        let room = self.cap - self.buf.len();
        self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if self.buf.len() < self.need {
            return Ok(None);
        }
        if self.version.is_none() {
            match magic(&self.buf)? {
                Some((m, v)) => {
                    self.magic = m;
                    self.version = Some(v);
                }
                None => {
                    self.need = self.buf.len() + 1;
                    return Ok(None);
                }
            }
            self.pos = MAGIC_LEN;
        }
        loop {
            let mut c = Cursor::new(&self.buf, self.pos);
            match aux_field(&mut c, self.aux_limit) {
                Ok(Some(kv)) => {
                    self.aux.push(kv);
                    self.pos = c.pos();
                }
                Ok(None) => {
                    return Ok(Some(Parsed {
                        header: Header {
                            magic: self.magic,
                            version: self.version.unwrap_or_default(),
                            aux: std::mem::take(&mut self.aux),
                        },
                        end: self.pos as u64,
                    }));
                }
                Err(Stop::Need(n)) if n > self.cap => {
                    return Err(RdbError::malformed(
                        self.pos,
                        format!(
                            "the aux fields at the start of the dump exceed the {}-byte limit",
                            self.aux_limit
                        ),
                    ));
                }
                Err(Stop::Need(n)) => {
                    self.need = n;
                    return Ok(None);
                }
                Err(Stop::Fail(e)) => return Err(e),
            }
        }
    }
}

/// One `0xFA key value` aux field, or `None` at the first other opcode.
fn aux_field(c: &mut Cursor<'_>, max: usize) -> Result<Option<(String, String)>, Stop> {
    if c.peek()? != OPCODE_AUX {
        return Ok(None);
    }
    c.byte()?;
    let key = c.string(max)?;
    let value = c.string(max)?;
    Ok(Some((
        String::from_utf8_lossy(&key).into_owned(),
        String::from_utf8_lossy(&value).into_owned(),
    )))
}
