//! RDB values: the type ids, the decoded [`Value`], and the decoder of
//! each type and encoding from a [`Cursor`].

use std::borrow::Cow;

use crate::encodings::{self, Elem, Reason};
use crate::error::RdbError;
use crate::head::Magic;
use crate::stream::{self, Stream};
use crate::string::{Cursor, Stop};

const MODULE_OP_EOF: u64 = 0;
const MODULE_OP_SINT: u64 = 1;
pub(crate) const MODULE_OP_UINT: u64 = 2;
const MODULE_OP_FLOAT: u64 = 3;
const MODULE_OP_DOUBLE: u64 = 4;
const MODULE_OP_STRING: u64 = 5;

const QUICKLIST_PLAIN: u64 = 1;
const QUICKLIST_PACKED: u64 = 2;

/// Value type ids, from rdb.h.
pub mod types {
    #![allow(missing_docs)]
    pub const STRING: u8 = 0;
    pub const LIST: u8 = 1;
    pub const SET: u8 = 2;
    pub const ZSET: u8 = 3;
    pub const HASH: u8 = 4;
    pub const ZSET_2: u8 = 5;
    pub const MODULE_PRE_GA: u8 = 6;
    pub const MODULE_2: u8 = 7;
    pub const HASH_ZIPMAP: u8 = 9;
    pub const LIST_ZIPLIST: u8 = 10;
    pub const SET_INTSET: u8 = 11;
    pub const ZSET_ZIPLIST: u8 = 12;
    pub const HASH_ZIPLIST: u8 = 13;
    pub const LIST_QUICKLIST: u8 = 14;
    pub const STREAM_LISTPACKS: u8 = 15;
    pub const HASH_LISTPACK: u8 = 16;
    pub const ZSET_LISTPACK: u8 = 17;
    pub const LIST_QUICKLIST_2: u8 = 18;
    pub const STREAM_LISTPACKS_2: u8 = 19;
    pub const SET_LISTPACK: u8 = 20;
    pub const STREAM_LISTPACKS_3: u8 = 21;
    /// Redis 7.4 release candidates: a hash with field expiries, absolute.
    pub const HASH_METADATA_PRE_GA: u8 = 22;
    /// Redis 7.4 release candidates: a listpack hash with field expiries.
    pub const HASH_LISTPACK_EX_PRE_GA: u8 = 23;
    /// Redis 7.4+: a hash with field expiries relative to the earliest.
    pub const HASH_METADATA: u8 = 24;
    /// Redis 7.4+: a listpack hash with field expiries.
    pub const HASH_LISTPACK_EX: u8 = 25;
    /// Valkey 9+ (`VALKEY` magic only; Redis uses 22 for another type): a
    /// hash with field expiries.
    pub const VALKEY_HASH_2: u8 = 22;
    /// Valkey 9.2+ (`VALKEY` magic only): a path hash.
    pub const VALKEY_PATH_HASH: u8 = 23;
}

/// A decoded value. Integers stored in compact encodings come out as their
/// decimal text, as Redis returns them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    String(Vec<u8>),
    /// A list, in order.
    List(Vec<Vec<u8>>),
    /// A set, in dump order.
    Set(Vec<Vec<u8>>),
    /// A sorted set as (member, score), in dump order.
    SortedSet(Vec<(Vec<u8>, f64)>),
    /// A hash as (field, value), in dump order.
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    /// A hash some of whose fields expire (Redis 7.4+ `HEXPIRE`, Valkey 9+),
    /// in dump order.
    HashWithExpiry(Vec<HashField>),
    /// A stream: entries, metadata and consumer groups.
    Stream(Stream),
    /// A module value (type 7): the module type id (name and encoding
    /// version packed as Redis does) and the raw opcode-annotated payload,
    /// up to and including its EOF opcode.
    Module {
        /// The 64-bit module type id.
        id: u64,
        /// The raw payload.
        raw: Vec<u8>,
    },
}

impl Value {
    /// Its size as Redis counts it: elements of a collection (`LLEN`,
    /// `SCARD`, `ZCARD`, `HLEN`, `XLEN`), 1 for a string or module value.
    #[must_use]
    pub fn elements(&self) -> u64 {
        let n = match self {
            Value::String(_) | Value::Module { .. } => 1,
            Value::List(v) | Value::Set(v) => v.len(),
            Value::SortedSet(v) => v.len(),
            Value::Hash(v) => v.len(),
            Value::HashWithExpiry(v) => v.len(),
            Value::Stream(s) => return s.length,
        };
        n as u64
    }
}

/// The name and encoding version packed into a module type id: nine
/// characters of 6 bits each from Redis's module name charset, then 10 bits
/// of encoding version.
#[must_use]
pub fn module_type_name(id: u64) -> (String, u16) {
    const CHARSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let name = (0..9)
        .map(|i| char::from(CHARSET[((id >> (10 + 6 * (8 - i))) & 63) as usize]))
        .collect();
    (name, (id & 1023) as u16)
}

/// A field of a hash whose fields may expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashField {
    /// The field.
    pub field: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
    /// Absolute expiry, ms since the epoch.
    pub expire_ms: Option<i64>,
}

/// The largest field expiry Redis accepts (`EB_EXPIRE_TIME_MAX`, 2^48 - 1 ms).
const MAX_FIELD_EXPIRY: u64 = (1 << 48) - 1;

/// What the value decoders need to know of the dump they are in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    /// The longest string or blob accepted.
    pub(crate) max: usize,
    /// Decides what type ids that Redis and Valkey both use mean.
    pub(crate) magic: Magic,
}

pub(crate) fn malformed(at: usize, reason: impl Into<String>) -> Stop {
    Stop::Fail(RdbError::malformed(at, reason))
}

pub(crate) fn blob_err(at: usize) -> impl Fn(Reason) -> Stop {
    move |r| malformed(at, r)
}

pub(crate) fn ms_time(c: &mut Cursor<'_>) -> Result<i64, Stop> {
    Ok(i64::from_le_bytes(c.array()?))
}

pub(crate) fn len_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX).min(1024)
}

/// Skips a module's opcode-annotated value up to and including its EOF.
pub(crate) fn module_payload(c: &mut Cursor<'_>, max: usize) -> Result<(), Stop> {
    loop {
        let at = c.pos();
        match c.plain_length()? {
            MODULE_OP_EOF => return Ok(()),
            MODULE_OP_SINT | MODULE_OP_UINT => {
                c.plain_length()?;
            }
            MODULE_OP_FLOAT => {
                c.array::<4>()?;
            }
            MODULE_OP_DOUBLE => {
                c.array::<8>()?;
            }
            MODULE_OP_STRING => {
                c.string(max)?;
            }
            other => {
                return Err(malformed(
                    at,
                    format!("unknown module value opcode {other}"),
                ));
            }
        }
    }
}

fn score_text(at: usize, s: &[u8]) -> Result<f64, Stop> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .ok_or_else(|| {
            malformed(
                at,
                format!(
                    "sorted set score {:?} is not a number",
                    s.escape_ascii().to_string()
                ),
            )
        })
}

fn field_expiry(at: usize, ms: u64) -> Result<i64, Stop> {
    if ms > MAX_FIELD_EXPIRY {
        return Err(malformed(
            at,
            format!("hash field expiry {ms} is past the largest Redis accepts"),
        ));
    }
    i64::try_from(ms).map_err(|_| malformed(at, "hash field expiry out of range"))
}

/// A listpack of (field, value, expiry) triples, expiry 0 for none.
fn listpack_ex(at: usize, blob: &[u8]) -> Result<Vec<HashField>, Stop> {
    let flat = encodings::listpack(blob).map_err(blob_err(at))?;
    if !flat.len().is_multiple_of(3) {
        return Err(malformed(
            at,
            format!(
                "hash listpack with expiries holds {} elements, not a whole number of triples",
                flat.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(flat.len() / 3);
    let mut it = flat.into_iter();
    while let (Some(field), Some(value), Some(ttl)) = (it.next(), it.next(), it.next()) {
        let ms = std::str::from_utf8(&ttl)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| malformed(at, "hash field expiry is not a non-negative integer"))?;
        let expire_ms = if ms == 0 {
            None
        } else {
            Some(field_expiry(at, ms)?)
        };
        out.push(HashField {
            field,
            value,
            expire_ms,
        });
    }
    Ok(out)
}

/// Counts a compact container's elements; `pairs` if they must pair up (as
/// field-value or member-score), `scored` if every second one must be a
/// number.
fn count_blob(
    at: usize,
    blob: &[u8],
    walk: impl FnOnce(&[u8], &mut dyn FnMut(Elem<'_>)) -> Result<usize, Reason>,
    pairs: bool,
    scored: bool,
) -> Result<u64, Stop> {
    let mut i = 0usize;
    let mut bad_score = None;
    let n = walk(blob, &mut |e| {
        if scored
            && i % 2 == 1
            && bad_score.is_none()
            && let Elem::Bytes(b) = e
            && score_text(at, b).is_err()
        {
            bad_score = Some(b.escape_ascii().to_string());
        }
        i += 1;
    })
    .map_err(blob_err(at))?;
    if let Some(s) = bad_score {
        return Err(malformed(
            at,
            format!("sorted set score {s:?} is not a number"),
        ));
    }
    if pairs && !n.is_multiple_of(2) {
        return Err(malformed(
            at,
            format!("the container holds {n} elements, not a whole number of pairs"),
        ));
    }
    Ok((if pairs { n / 2 } else { n }) as u64)
}

/// How many elements the value of type `type_id` holds (as
/// [`Value::elements`] counts them), every length and structure checked as
/// [`read`] checks them, but nothing copied: strings are stepped over (an
/// LZF block checked, not expanded) and compact containers walked in place.
/// Rare types (streams, modules, field-expiry hashes) are decoded and
/// counted.
pub(crate) fn count(c: &mut Cursor<'_>, type_id: u8, at: usize, ctx: Ctx) -> Result<Counted, Stop> {
    use encodings::{walk_listpack, walk_ziplist};
    use types::*;
    let max = ctx.max;
    let strings = |c: &mut Cursor<'_>, each: u64| -> Result<u64, Stop> {
        let n = c.plain_length()?;
        for _ in 0..n {
            for _ in 0..each {
                c.skip_string(max)?;
            }
        }
        Ok(n)
    };
    let lp = |b: &[u8], f: &mut dyn FnMut(Elem<'_>)| walk_listpack(b, f);
    let zl = |b: &[u8], f: &mut dyn FnMut(Elem<'_>)| walk_ziplist(b, f);
    let p = c.pos();
    let elements = match type_id {
        STRING => {
            c.skip_string(max)?;
            1
        }
        LIST | SET => strings(c, 1)?,
        HASH => strings(c, 2)?,
        ZSET | ZSET_2 => {
            let n = c.plain_length()?;
            for _ in 0..n {
                c.skip_string(max)?;
                if type_id == ZSET_2 {
                    c.array::<8>()?;
                } else {
                    let p = c.pos();
                    if let len @ 0..=252 = c.byte()? {
                        score_text(p, c.take(u64::from(len))?)?;
                    }
                }
            }
            n
        }
        LIST_ZIPLIST => count_blob(p, &c.string_ref(max)?, zl, false, false)?,
        SET_LISTPACK => count_blob(p, &c.string_ref(max)?, lp, false, false)?,
        SET_INTSET => encodings::intset_len(&c.string_ref(max)?).map_err(blob_err(p))? as u64,
        ZSET_ZIPLIST => count_blob(p, &c.string_ref(max)?, zl, true, true)?,
        ZSET_LISTPACK => count_blob(p, &c.string_ref(max)?, lp, true, true)?,
        HASH_ZIPLIST => count_blob(p, &c.string_ref(max)?, zl, true, false)?,
        HASH_LISTPACK => count_blob(p, &c.string_ref(max)?, lp, true, false)?,
        LIST_QUICKLIST | LIST_QUICKLIST_2 => {
            let nodes = c.plain_length()?;
            let mut n = 0u64;
            for _ in 0..nodes {
                let plain = type_id == LIST_QUICKLIST_2 && {
                    let p = c.pos();
                    match c.plain_length()? {
                        QUICKLIST_PLAIN => true,
                        QUICKLIST_PACKED => false,
                        x => return Err(malformed(p, format!("unknown quicklist container {x}"))),
                    }
                };
                let p = c.pos();
                n = n.saturating_add(if plain {
                    c.skip_string(max)?;
                    1
                } else if type_id == LIST_QUICKLIST {
                    count_blob(p, &c.string_ref(max)?, zl, false, false)?
                } else {
                    count_blob(p, &c.string_ref(max)?, lp, false, false)?
                });
            }
            n
        }
        _ => {
            let value = read(c, type_id, at, ctx)?;
            let module_id = match &value {
                Value::Module { id, .. } => Some(*id),
                _ => None,
            };
            return Ok(Counted {
                elements: value.elements(),
                module_id,
            });
        }
    };
    Ok(Counted {
        elements,
        module_id: None,
    })
}

/// What [`count`] learns of a value.
pub(crate) struct Counted {
    pub(crate) elements: u64,
    /// The module type id of a module value.
    pub(crate) module_id: Option<u64>,
}

fn scored(at: usize, flat: Vec<Vec<u8>>) -> Result<Vec<(Vec<u8>, f64)>, Stop> {
    encodings::pairs("sorted set", flat)
        .map_err(blob_err(at))?
        .into_iter()
        .map(|(m, s)| Ok((m, score_text(at, &s)?)))
        .collect()
}

/// Decodes the value of type `type_id` (whose type byte is at `at`): one
/// decoder per type family, each knowing every encoding of its family.
pub(crate) fn read(c: &mut Cursor<'_>, type_id: u8, at: usize, ctx: Ctx) -> Result<Value, Stop> {
    use types::*;
    let max = ctx.max;
    let redis = ctx.magic == Magic::Redis;
    match type_id {
        STRING => Ok(Value::String(c.string(max)?)),
        LIST | LIST_ZIPLIST | LIST_QUICKLIST | LIST_QUICKLIST_2 => list(c, type_id, max),
        SET | SET_INTSET | SET_LISTPACK => set(c, type_id, max),
        ZSET | ZSET_2 | ZSET_ZIPLIST | ZSET_LISTPACK => sorted_set(c, type_id, max),
        HASH | HASH_ZIPMAP | HASH_ZIPLIST | HASH_LISTPACK => hash(c, type_id, max),
        // Type ids 22 and 23 mean different things to Redis and Valkey.
        HASH_METADATA_PRE_GA | HASH_METADATA | HASH_LISTPACK_EX_PRE_GA | HASH_LISTPACK_EX
            if redis =>
        {
            redis_hash_with_expiry(c, type_id, max)
        }
        VALKEY_HASH_2 if !redis => valkey_hash_with_expiry(c, max),
        VALKEY_PATH_HASH if !redis => Err(malformed(
            at,
            "Valkey 9.2 path hashes (type 23) are not supported yet",
        )),
        MODULE_PRE_GA | MODULE_2 => module(c, type_id, at, max),
        STREAM_LISTPACKS | STREAM_LISTPACKS_2 | STREAM_LISTPACKS_3 => {
            Ok(Value::Stream(stream::read(c, type_id, max)?))
        }
        other => Err(malformed(at, format!("unknown value type {other}"))),
    }
}

/// A blob-encoded value (a compact container, or a plain quicklist node):
/// its position, for errors, and its bytes. A blob is decoded where it
/// lies, copied only if it was compressed.
fn blob<'a>(c: &mut Cursor<'a>, max: usize) -> Result<(usize, Cow<'a, [u8]>), Stop> {
    let p = c.pos();
    Ok((p, c.string_ref(max)?))
}

/// A length, then that many strings: the elements of a linked list or a
/// hashtable set.
fn strings(c: &mut Cursor<'_>, max: usize) -> Result<Vec<Vec<u8>>, Stop> {
    let n = c.plain_length()?;
    let mut v = Vec::with_capacity(len_usize(n));
    for _ in 0..n {
        v.push(c.string(max)?);
    }
    Ok(v)
}

/// A list: linked (one string per element), a ziplist, or a quicklist of
/// ziplist nodes (RDB 7+) or of listpack and plain nodes (RDB 10+).
fn list(c: &mut Cursor<'_>, type_id: u8, max: usize) -> Result<Value, Stop> {
    use types::*;
    Ok(Value::List(match type_id {
        LIST => strings(c, max)?,
        LIST_ZIPLIST => {
            let (p, b) = blob(c, max)?;
            encodings::ziplist(&b).map_err(blob_err(p))?
        }
        _ => quicklist(c, type_id == LIST_QUICKLIST_2, max)?,
    }))
}

/// A quicklist's nodes, each a ziplist (`v2` false) or, in quicklist 2, a
/// listpack or a plain node holding one large element.
fn quicklist(c: &mut Cursor<'_>, v2: bool, max: usize) -> Result<Vec<Vec<u8>>, Stop> {
    let n = c.plain_length()?;
    let mut v = Vec::new();
    for _ in 0..n {
        let container = if v2 {
            let p = c.pos();
            match c.plain_length()? {
                x @ (QUICKLIST_PLAIN | QUICKLIST_PACKED) => x,
                x => return Err(malformed(p, format!("unknown quicklist container {x}"))),
            }
        } else {
            QUICKLIST_PACKED
        };
        let (p, b) = blob(c, max)?;
        if container == QUICKLIST_PLAIN {
            v.push(b.into_owned());
        } else if v2 {
            v.extend(encodings::listpack(&b).map_err(blob_err(p))?);
        } else {
            v.extend(encodings::ziplist(&b).map_err(blob_err(p))?);
        }
    }
    Ok(v)
}

/// A set: a hashtable (one string per member), an intset, or a listpack.
fn set(c: &mut Cursor<'_>, type_id: u8, max: usize) -> Result<Value, Stop> {
    use types::*;
    Ok(Value::Set(match type_id {
        SET => strings(c, max)?,
        SET_INTSET => {
            let (p, b) = blob(c, max)?;
            encodings::intset(&b).map_err(blob_err(p))?
        }
        _ => {
            let (p, b) = blob(c, max)?;
            encodings::listpack(&b).map_err(blob_err(p))?
        }
    }))
}

/// A sorted set: a skiplist with text scores (`ZSET`) or binary ones
/// (`ZSET_2`), or a ziplist or listpack of member-score pairs.
fn sorted_set(c: &mut Cursor<'_>, type_id: u8, max: usize) -> Result<Value, Stop> {
    use types::*;
    if type_id == ZSET_ZIPLIST || type_id == ZSET_LISTPACK {
        let (p, b) = blob(c, max)?;
        let flat = if type_id == ZSET_ZIPLIST {
            encodings::ziplist(&b)
        } else {
            encodings::listpack(&b)
        };
        return Ok(Value::SortedSet(scored(p, flat.map_err(blob_err(p))?)?));
    }
    let n = c.plain_length()?;
    let mut v = Vec::with_capacity(len_usize(n));
    for _ in 0..n {
        let m = c.string(max)?;
        let s = if type_id == ZSET_2 {
            f64::from_le_bytes(c.array()?)
        } else {
            let p = c.pos();
            match c.byte()? {
                255 => f64::NEG_INFINITY,
                254 => f64::INFINITY,
                253 => f64::NAN,
                len => score_text(p, c.take(u64::from(len))?)?,
            }
        };
        v.push((m, s));
    }
    Ok(Value::SortedSet(v))
}

/// A hash: a hashtable (field, value strings), a zipmap, or a ziplist or
/// listpack of field-value pairs.
fn hash(c: &mut Cursor<'_>, type_id: u8, max: usize) -> Result<Value, Stop> {
    use types::*;
    if type_id == HASH {
        let n = c.plain_length()?;
        let mut v = Vec::with_capacity(len_usize(n));
        for _ in 0..n {
            let f = c.string(max)?;
            v.push((f, c.string(max)?));
        }
        return Ok(Value::Hash(v));
    }
    let (p, b) = blob(c, max)?;
    Ok(Value::Hash(match type_id {
        HASH_ZIPMAP => encodings::zipmap(&b).map_err(blob_err(p))?,
        HASH_ZIPLIST => encodings::pairs("hash", encodings::ziplist(&b).map_err(blob_err(p))?)
            .map_err(blob_err(p))?,
        _ => encodings::pairs("hash", encodings::listpack(&b).map_err(blob_err(p))?)
            .map_err(blob_err(p))?,
    }))
}

/// A Redis hash some of whose fields expire: a hashtable (types 22 and 24)
/// or a listpack of triples (23 and 25), in the form of Redis 7.4's
/// release candidates (22, 23) or of its release (24, 25).
fn redis_hash_with_expiry(c: &mut Cursor<'_>, type_id: u8, max: usize) -> Result<Value, Stop> {
    use types::*;
    if type_id == HASH_LISTPACK_EX_PRE_GA || type_id == HASH_LISTPACK_EX {
        if type_id == HASH_LISTPACK_EX {
            // The earliest expiry, kept for a future use; the listpack
            // has every field's own.
            c.array::<8>()?;
        }
        let (p, b) = blob(c, max)?;
        return Ok(Value::HashWithExpiry(listpack_ex(p, &b)?));
    }
    // 7.4 GA stores the earliest expiry first and each field's as an
    // offset from it (+1, so that 0 still means "none"); the release
    // candidates stored absolute times.
    let base = if type_id == HASH_METADATA {
        Some(u64::from_le_bytes(c.array()?))
    } else {
        None
    };
    let n = c.plain_length()?;
    let mut v = Vec::with_capacity(len_usize(n));
    for _ in 0..n {
        let p = c.pos();
        let ttl = c.plain_length()?;
        let expire = match (ttl, base) {
            (0, _) => None,
            (t, Some(b)) => Some(t.checked_add(b).and_then(|x| x.checked_sub(1))),
            (t, None) => Some(Some(t)),
        };
        let expire_ms = expire
            .map(|e| field_expiry(p, e.unwrap_or(u64::MAX)))
            .transpose()?;
        let field = c.string(max)?;
        let value = c.string(max)?;
        v.push(HashField {
            field,
            value,
            expire_ms,
        });
    }
    Ok(Value::HashWithExpiry(v))
}

/// A Valkey 9 hash some of whose fields expire (`HASH_2`): a hashtable
/// whose fields are each followed by their absolute expiry, -1 for none.
fn valkey_hash_with_expiry(c: &mut Cursor<'_>, max: usize) -> Result<Value, Stop> {
    let n = c.plain_length()?;
    let mut v = Vec::with_capacity(len_usize(n));
    for _ in 0..n {
        let field = c.string(max)?;
        let value = c.string(max)?;
        let p = c.pos();
        let expire_ms = match ms_time(c)? {
            -1 => None,
            t if t < 0 => return Err(malformed(p, format!("hash field expiry {t}"))),
            t => Some(field_expiry(p, t.unsigned_abs())?),
        };
        v.push(HashField {
            field,
            value,
            expire_ms,
        });
    }
    Ok(Value::HashWithExpiry(v))
}

/// A module value: its module type id, then its opcode-annotated payload,
/// kept raw. The 4.0 release candidates' form (type 6) is refused.
fn module(c: &mut Cursor<'_>, type_id: u8, at: usize, max: usize) -> Result<Value, Stop> {
    if type_id == types::MODULE_PRE_GA {
        return Err(malformed(
            at,
            "pre-release (4.0 RC) module values are not supported",
        ));
    }
    let id = c.plain_length()?;
    let p = c.pos();
    module_payload(c, max)?;
    Ok(Value::Module {
        id,
        raw: c.since(p).to_vec(),
    })
}
