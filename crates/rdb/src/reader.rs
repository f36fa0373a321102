//! Streaming decoding of a whole RDB dump, one key at a time.
//!
//! The reader keeps a buffer holding the part of the stream it is decoding
//! (the current opcode or key-value pair, plus what a read brought in past
//! it), so memory is bounded by the largest single value, not the dump. Each
//! item is decoded from the buffer with the same [`Cursor`] the head parser
//! uses; when the buffer is short the decoder says how many bytes it needs,
//! the reader reads at least that many (growing the read geometrically so a
//! big value is re-decoded only O(log n) times) and starts the item again.

use std::io::{ErrorKind, Read};

use crate::crc64::crc64;
use crate::error::RdbError;
use crate::head::{self, MAGIC_LEN, Magic};
use crate::string::{Cursor, Stop};
use crate::value::{self, Ctx, MODULE_OP_UINT, Value, malformed, module_payload};
use crate::verify::Checksum;

const MIN_READ: usize = 64 * 1024;
const MAX_READ: usize = 1 << 20;
/// Items up to this size are retried after any read that completes them.
const CHEAP_RETRY: usize = 4096;
const FIRST_CHECKSUMMED_VERSION: u32 = 5;

/// Valkey 9 (`VALKEY` magic only): a cluster's unfinished slot imports.
const OP_SLOT_IMPORT: u8 = 0xf3;
const OP_SLOT_INFO: u8 = 0xf4;
const OP_FUNCTION2: u8 = 0xf5;
const OP_FUNCTION_PRE_GA: u8 = 0xf6;
const OP_MODULE_AUX: u8 = 0xf7;
const OP_IDLE: u8 = 0xf8;
const OP_FREQ: u8 = 0xf9;
const OP_AUX: u8 = 0xfa;
const OP_RESIZEDB: u8 = 0xfb;
const OP_EXPIRETIME_MS: u8 = 0xfc;
const OP_EXPIRETIME: u8 = 0xfd;
const OP_SELECTDB: u8 = 0xfe;
const OP_EOF: u8 = 0xff;

/// One key and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The database number (from the last SELECTDB; 0 before any).
    pub db: u64,
    /// The key.
    pub key: Vec<u8>,
    /// Absolute expiry, ms since the epoch.
    pub expire_ms: Option<i64>,
    /// LRU idle time in seconds.
    pub idle: Option<u64>,
    /// LFU frequency counter.
    pub freq: Option<u8>,
    /// The RDB value type id (see [`types`](crate::types)), which names the encoding.
    pub type_id: u8,
    /// The decoded value.
    pub value: Value,
    /// The value as `DUMP` would return it (type, serialized value, RDB
    /// version, CRC-64), when the reader was built [`with_dump_payloads`](Reader::with_dump_payloads).
    pub dump: Option<Vec<u8>>,
}

/// The payload of `DUMP`/`RESTORE`: the type byte, the value exactly as the
/// RDB file serializes it, the RDB version (2 bytes, little-endian), and the
/// CRC-64 of all that (8 bytes, little-endian).
pub fn dump_payload(type_id: u8, value: &[u8], rdb_version: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(value.len() + 11);
    p.push(type_id);
    p.extend_from_slice(value);
    p.extend_from_slice(&u16::try_from(rdb_version).unwrap_or(u16::MAX).to_le_bytes());
    let crc = crc64(0, &p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

/// What one opcode (or key-value pair) decoded to.
enum Item<V> {
    Aux(String, String),
    SelectDb(u64),
    Expire(i64),
    Idle(u64),
    Freq(u8),
    Function(Vec<u8>),
    /// RESIZEDB, SLOT_INFO and MODULE_AUX: consumed, nothing to keep.
    Skipped,
    Eof,
    /// Type, key, value (decoded, or counted), and where the value's
    /// bytes lie in the buffer.
    Pair(u8, Vec<u8>, V, std::ops::Range<usize>),
}

/// Decodes one value as `next_entry` or `next_key` wants it.
type Decoder<V> = fn(&mut Cursor<'_>, u8, usize, Ctx) -> Result<V, Stop>;

/// One key as [`Reader::next_key`] gives it: everything but the value,
/// which is only measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The database number.
    pub db: u64,
    /// The key.
    pub key: Vec<u8>,
    /// Absolute expiry, ms since the epoch.
    pub expire_ms: Option<i64>,
    /// LRU idle time in seconds.
    pub idle: Option<u64>,
    /// LFU frequency counter.
    pub freq: Option<u8>,
    /// The RDB value type id.
    pub type_id: u8,
    /// Elements, as [`Value::elements`] counts them.
    pub elements: u64,
    /// For a module value, its module type id ([`crate::module_type_name`]).
    pub module_id: Option<u64>,
    /// Bytes the key and its value take in the dump, with whatever came
    /// since the previous key: its expiry and LRU/LFU opcodes, and at the
    /// start of a database its SELECTDB and RESIZEDB.
    pub bytes: u64,
}

/// Reads an RDB dump entry by entry.
///
/// ```no_run
/// # fn main() -> Result<(), rdb::RdbError> {
/// let file = std::fs::File::open("dump.rdb").expect("open");
/// let mut reader = rdb::Reader::new(std::io::BufReader::new(file))?;
/// while let Some(entry) = reader.next_entry()? {
///     println!("db {} key {:?}", entry.db, entry.key);
/// }
/// # Ok(())
/// # }
/// ```
pub struct Reader<R> {
    inner: R,
    /// Storage; only `buf[..end]` holds stream bytes. The rest is kept
    /// (zeroed once) for the next reads rather than re-zeroed each time.
    buf: Vec<u8>,
    end: usize,
    /// First byte of `buf` not consumed yet.
    start: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// CRC-64 of the stream up to `buf[crc_done]`: consumed bytes are
    /// checksummed in bulk when the buffer is compacted or the dump ends,
    /// not one item at a time.
    crc: u64,
    crc_done: usize,
    magic: Magic,
    version: u32,
    aux: Vec<(String, String)>,
    functions: Vec<Vec<u8>>,
    db: u64,
    expire: Option<i64>,
    idle: Option<u64>,
    freq: Option<u8>,
    max_value: usize,
    checksum: Option<Checksum>,
    failed: Option<RdbError>,
    /// Build [`Entry::dump`] for each entry.
    want_dumps: bool,
    last_dump: Option<Vec<u8>>,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the magic and version, then the aux fields that
    /// precede the first key.
    ///
    /// # Errors
    ///
    /// [`RdbError::BadMagic`], [`RdbError::UnsupportedVersion`],
    /// [`RdbError::Truncated`], [`RdbError::Io`], or
    /// [`RdbError::Malformed`] for a bad aux field.
    pub fn new(inner: R) -> Result<Self, RdbError> {
        let mut r = Self {
            inner,
            buf: Vec::new(),
            end: 0,
            start: 0,
            base: 0,
            crc: 0,
            crc_done: 0,
            magic: Magic::Redis,
            version: 0,
            aux: Vec::new(),
            functions: Vec::new(),
            db: 0,
            expire: None,
            idle: None,
            freq: None,
            max_value: usize::MAX,
            checksum: None,
            failed: None,
            want_dumps: false,
            last_dump: None,
        };
        r.header()?;
        // Leading aux fields, so `aux()` is useful before the first key.
        loop {
            let c = Cursor::new(&r.buf[..r.end], r.start);
            match c.peek() {
                Ok(OP_AUX) => {}
                Ok(_) => break,
                Err(Stop::Need(n)) => {
                    r.fill(n)?;
                    continue;
                }
                Err(Stop::Fail(e)) => return Err(r.rebase(e)),
            }
            // An aux field, so the value decoder is never called.
            if let Item::Aux(k, v) = r.item(value::count, false)? {
                r.aux.push((k, v));
            }
        }
        Ok(r)
    }

    /// Also gives each entry its value as the payload `DUMP` returns and
    /// `RESTORE` accepts ([`Entry::dump`]), so a restore can send a key
    /// without re-encoding it. Costs a copy of each value.
    #[must_use]
    pub fn with_dump_payloads(mut self) -> Self {
        self.want_dumps = true;
        self
    }

    /// Refuses any single string or container blob longer than `max`
    /// bytes, and any single entry whose encoding needs more than `max`
    /// bytes of buffer; without it the only bound is the input itself.
    #[must_use]
    pub fn with_max_value_bytes(mut self, max: usize) -> Self {
        self.max_value = max.max(1);
        self
    }

    /// The RDB format version.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Which magic the dump starts with.
    #[must_use]
    pub fn magic(&self) -> Magic {
        self.magic
    }

    /// The aux fields met so far, in order (integers as decimal text,
    /// non-UTF-8 bytes replaced).
    #[must_use]
    pub fn aux(&self) -> &[(String, String)] {
        &self.aux
    }

    /// The function libraries (FUNCTION2 opcode) met so far, as code.
    #[must_use]
    pub fn functions(&self) -> &[Vec<u8>] {
        &self.functions
    }

    /// The checksum verdict, once the EOF opcode has been read.
    #[must_use]
    pub fn checksum(&self) -> Option<Checksum> {
        self.checksum
    }

    /// Bytes of the stream consumed so far.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    /// The underlying reader and any bytes read from it past what was
    /// consumed (after EOF: whatever followed the dump).
    pub fn into_parts(self) -> (R, Vec<u8>) {
        let rest = self
            .buf
            .get(self.start..self.end)
            .unwrap_or_default()
            .to_vec();
        (self.inner, rest)
    }

    /// The next key, or `None` after the EOF opcode (and checksum).
    ///
    /// # Errors
    ///
    /// [`RdbError::Malformed`] with the offset of the offending structure,
    /// [`RdbError::Truncated`] if the stream ends early,
    /// [`RdbError::BadChecksum`] if the trailer does not match,
    /// [`RdbError::Io`] if reading fails. After an error every later call
    /// returns it again.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, RdbError> {
        let Some((head, value)) = self.next_with(value::read, self.want_dumps)? else {
            return Ok(None);
        };
        Ok(Some(Entry {
            db: head.db,
            key: head.key,
            expire_ms: head.expire_ms,
            idle: head.idle,
            freq: head.freq,
            type_id: head.type_id,
            value,
            dump: self.last_dump.take(),
        }))
    }

    /// The next key with its value measured rather than decoded: every
    /// length and structure is checked as [`next_entry`](Self::next_entry)
    /// checks them (and the CRC-64 at the end), but no element is copied and
    /// no string decompressed, which is what a key analysis needs. Mixes
    /// freely with `next_entry`.
    ///
    /// # Errors
    ///
    /// As [`next_entry`](Self::next_entry).
    pub fn next_key(&mut self) -> Result<Option<KeyInfo>, RdbError> {
        let next = self.next_with(value::count, false)?;
        Ok(next.map(|(head, counted)| KeyInfo {
            elements: counted.elements,
            module_id: counted.module_id,
            ..head
        }))
    }

    /// The next key with its value as the `DUMP` payload `RESTORE` takes,
    /// measured (every structure checked, as [`next_key`](Self::next_key)
    /// does) but not decoded: what a restore by `RESTORE` needs, at the cost
    /// of one copy of the value.
    ///
    /// # Errors
    ///
    /// As [`next_entry`](Self::next_entry).
    pub fn next_dump(&mut self) -> Result<Option<(KeyInfo, Vec<u8>)>, RdbError> {
        let Some((head, counted)) = self.next_with(value::count, true)? else {
            return Ok(None);
        };
        let dump = self.last_dump.take().unwrap_or_default();
        let info = KeyInfo {
            elements: counted.elements,
            module_id: counted.module_id,
            ..head
        };
        Ok(Some((info, dump)))
    }

    /// The next key, its value decoded by `decode` (and its `DUMP` payload
    /// kept in `last_dump` if `dumps`); the key's `elements` and
    /// `module_id` are left for the caller.
    fn next_with<V>(
        &mut self,
        decode: Decoder<V>,
        dumps: bool,
    ) -> Result<Option<(KeyInfo, V)>, RdbError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.checksum.is_some() {
            return Ok(None);
        }
        let result = self.next_inner(decode, dumps);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn next_inner<V>(
        &mut self,
        decode: Decoder<V>,
        dumps: bool,
    ) -> Result<Option<(KeyInfo, V)>, RdbError> {
        let from = self.offset();
        loop {
            match self.item(decode, dumps)? {
                Item::Aux(k, v) => self.aux.push((k, v)),
                Item::SelectDb(db) => self.db = db,
                Item::Expire(t) => self.expire = Some(t),
                Item::Idle(t) => self.idle = Some(t),
                Item::Freq(f) => self.freq = Some(f),
                Item::Function(code) => self.functions.push(code),
                Item::Skipped => {}
                Item::Eof => {
                    self.trailer()?;
                    return Ok(None);
                }
                Item::Pair(type_id, key, value, _) => {
                    let head = KeyInfo {
                        db: self.db,
                        key,
                        expire_ms: self.expire.take(),
                        idle: self.idle.take(),
                        freq: self.freq.take(),
                        type_id,
                        elements: 0,
                        module_id: None,
                        bytes: self.offset() - from,
                    };
                    return Ok(Some((head, value)));
                }
            }
        }
    }

    fn header(&mut self) -> Result<(), RdbError> {
        self.fill(MAGIC_LEN)?;
        // Nine bytes are there, so the answer is never "not enough yet".
        let (magic, version) = head::magic(&self.buf[..MAGIC_LEN])?.ok_or(RdbError::Truncated {
            bytes: MAGIC_LEN as u64,
        })?;
        self.magic = magic;
        self.version = version;
        self.consume(MAGIC_LEN);
        Ok(())
    }

    /// Checks the 8-byte trailer after the EOF opcode.
    fn trailer(&mut self) -> Result<(), RdbError> {
        if self.version < FIRST_CHECKSUMMED_VERSION {
            self.checksum = Some(Checksum::Absent);
            return Ok(());
        }
        self.checksum_consumed();
        let actual = self.crc;
        if self.end < self.start + 8 {
            self.fill(self.start + 8)?;
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.buf[self.start..self.start + 8]);
        self.consume(self.start + 8);
        self.checksum = Some(match u64::from_le_bytes(t) {
            0 => Checksum::Disabled,
            expected if expected == actual => Checksum::Verified(actual),
            expected => return Err(RdbError::BadChecksum { expected, actual }),
        });
        Ok(())
    }

    /// Decodes one item, reading more input until it is whole.
    fn item<V>(&mut self, decode: Decoder<V>, dumps: bool) -> Result<Item<V>, RdbError> {
        loop {
            let mut c = Cursor::new(&self.buf[..self.end], self.start);
            let ctx = Ctx {
                max: self.max_value,
                magic: self.magic,
            };
            match item(&mut c, ctx, decode) {
                Ok(it) => {
                    if let (true, Item::Pair(type_id, _, _, span)) = (dumps, &it) {
                        self.last_dump = Some(dump_payload(
                            *type_id,
                            &self.buf[span.clone()],
                            self.version,
                        ));
                    }
                    let end = c.pos();
                    self.consume(end);
                    return Ok(it);
                }
                Err(Stop::Need(n)) => self.fill(n)?,
                Err(Stop::Fail(e)) => return Err(self.rebase(e)),
            }
        }
    }

    /// Marks `buf[..end]` consumed.
    fn consume(&mut self, end: usize) {
        self.start = end;
    }

    /// Brings the CRC up to the first unconsumed byte.
    fn checksum_consumed(&mut self) {
        self.crc = crc64(self.crc, &self.buf[self.crc_done..self.start]);
        self.crc_done = self.start;
    }

    /// Moves a buffer-relative error offset to a stream offset.
    fn rebase(&self, e: RdbError) -> RdbError {
        match e {
            RdbError::Malformed { offset, reason } => RdbError::Malformed {
                offset: offset.saturating_add(self.base),
                reason,
            },
            other => other,
        }
    }

    /// Reads until `buf` holds at least `need` bytes (an index into the
    /// current buffer), and opportunistically up to twice the pending item.
    ///
    /// For an item over [`CHEAP_RETRY`] bytes this may wait for up to half
    /// its size past `need` (so that retries stay amortized): a source that
    /// stays open after the dump should be bounded with [`Read::take`].
    fn fill(&mut self, mut need: usize) -> Result<(), RdbError> {
        if self.start > 0 {
            self.checksum_consumed();
            self.crc_done = 0;
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.base += self.start as u64;
            need = need.saturating_sub(self.start);
            self.start = 0;
        }
        if need > self.max_value.saturating_add(64) {
            return Err(RdbError::Malformed {
                offset: self.base,
                reason: format!(
                    "the entry here needs more than {} bytes, the configured limit",
                    self.max_value
                ),
            });
        }
        let prev_end = self.end;
        let target = need.max(self.end.saturating_add(self.end.max(MIN_READ)));
        while self.end < target {
            let end = self.end;
            let want = (target - end).min(MAX_READ);
            if self.buf.len() < end + want {
                self.buf.resize(end + want, 0);
            }
            let got = match self.inner.read(&mut self.buf[end..end + want]) {
                Ok(n) => n.min(want),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(RdbError::Io {
                        offset: self.base + end as u64,
                        kind: e.kind(),
                        message: e.to_string(),
                    });
                }
            };
            self.end += got;
            if got == 0 {
                if self.end >= need {
                    return Ok(());
                }
                return Err(RdbError::Truncated {
                    bytes: self.base + self.end as u64,
                });
            }
            // A short read means no more is ready right now. Stop waiting
            // once the item can be retried cheaply: it is small, or the
            // buffer grew by half since the last attempt, so that retrying
            // a big item from its start costs O(n log n) overall.
            if got < want
                && self.end >= need
                && (self.end <= CHEAP_RETRY || (self.end - prev_end) * 2 >= self.end)
            {
                break;
            }
        }
        Ok(())
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Entry, RdbError>;

    /// Yields entries, then `None`; an error is yielded once, then `None`.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed.is_some() {
            return None;
        }
        self.next_entry().transpose()
    }
}

fn item<V>(c: &mut Cursor<'_>, ctx: Ctx, decode: Decoder<V>) -> Result<Item<V>, Stop> {
    let max = ctx.max;
    let at = c.pos();
    let op = c.byte()?;
    Ok(match op {
        OP_EOF => Item::Eof,
        OP_SELECTDB => Item::SelectDb(c.plain_length()?),
        OP_RESIZEDB => {
            c.plain_length()?;
            c.plain_length()?;
            Item::Skipped
        }
        OP_SLOT_INFO => {
            c.plain_length()?;
            c.plain_length()?;
            c.plain_length()?;
            Item::Skipped
        }
        OP_SLOT_IMPORT if ctx.magic == Magic::Valkey => {
            c.string(max)?; // the import job's name
            let ranges = c.plain_length()?;
            for _ in 0..ranges {
                c.plain_length()?;
                c.plain_length()?;
            }
            Item::Skipped
        }
        OP_EXPIRETIME => {
            let secs = u32::from_le_bytes(c.array()?);
            Item::Expire(i64::from(secs) * 1000)
        }
        OP_EXPIRETIME_MS => Item::Expire(value::ms_time(c)?),
        OP_FREQ => Item::Freq(c.byte()?),
        OP_IDLE => Item::Idle(c.plain_length()?),
        OP_AUX => {
            let k = c.string(max)?;
            let v = c.string(max)?;
            Item::Aux(
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        }
        OP_MODULE_AUX => {
            let _id = c.plain_length()?;
            let when_at = c.pos();
            if c.plain_length()? != MODULE_OP_UINT {
                return Err(malformed(
                    when_at,
                    "module aux data has a bad `when` opcode",
                ));
            }
            c.plain_length()?;
            module_payload(c, max)?;
            Item::Skipped
        }
        OP_FUNCTION_PRE_GA => {
            return Err(malformed(
                at,
                "pre-release (7.0 RC) function library format is not supported",
            ));
        }
        OP_FUNCTION2 => Item::Function(c.string(max)?),
        type_id => {
            let key = c.string(max)?;
            let from = c.pos();
            let value = decode(c, type_id, at, ctx)?;
            Item::Pair(type_id, key, value, from..c.pos())
        }
    })
}
