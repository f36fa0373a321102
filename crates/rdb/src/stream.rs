//! Streams (RDB types 15, 19 and 21): the radix tree of listpack nodes with
//! their entries, the stream's metadata, and its consumer groups with their
//! pending entries lists and consumers.
//!
//! A node is a 16-byte key (the node's master id, big-endian ms and seq) and
//! a listpack that starts with a master entry (live count, deleted count,
//! the master field names, a 0 terminator) followed by entries, each
//! `flags ms-diff seq-diff [num-fields field value ...| value ...] lp-count`,
//! ids relative to the master id, field names omitted when the entry has the
//! master's fields (flag SAMEFIELDS). Deleted entries stay in the listpack,
//! flagged, until the node is rewritten; they are not part of the stream.

use crate::encodings::{self, Reason};
use crate::string::{Cursor, Stop};
use crate::value::{blob_err, len_usize, malformed, ms_time, types};

const FLAG_DELETED: i64 = 1;
const FLAG_SAMEFIELDS: i64 = 2;
/// Entries that share the master's fields store only their values, and each
/// decoded entry gets its own copy of the field names: a node may expand to
/// at most this many times its size (plus [`EXPANSION_ALLOWANCE`]), which
/// real streams stay far below, so that a crafted node with huge master
/// fields and many one-byte entries cannot make the reader allocate
/// gigabytes.
const MAX_EXPANSION: usize = 256;
const EXPANSION_ALLOWANCE: usize = 1 << 20;

/// A stream entry id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One stream entry, as `XRANGE` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// The entry's id.
    pub id: StreamId,
    /// Field-value pairs, in order.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// An entry of a consumer group's pending entries list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingEntry {
    /// The delivered entry.
    pub id: StreamId,
    /// Last delivery, ms since the epoch.
    pub delivery_time_ms: i64,
    /// Times it was delivered.
    pub delivery_count: u64,
}

/// A consumer of a stream consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConsumer {
    /// Consumer name.
    pub name: Vec<u8>,
    /// Last time the consumer was seen, ms since the epoch.
    pub seen_time_ms: i64,
    /// Last successful read, ms since the epoch (type 21 only).
    pub active_time_ms: Option<i64>,
    /// The ids of the group's pending entries owned by this consumer.
    pub pending: Vec<StreamId>,
}

/// A stream consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamGroup {
    /// Group name.
    pub name: Vec<u8>,
    /// Last id delivered to the group.
    pub last_id: StreamId,
    /// Entries read by the group (types 19 and 21 only).
    pub entries_read: Option<u64>,
    /// The group's pending entries list, in id order.
    pub pending: Vec<PendingEntry>,
    /// The group's consumers.
    pub consumers: Vec<StreamConsumer>,
}

/// A stream: its entries, metadata and consumer groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// `XLEN`: entries in the stream.
    pub length: u64,
    /// The live entries, in id order.
    pub entries: Vec<StreamEntry>,
    /// Number of listpack nodes.
    pub nodes: u64,
    /// Id of the last entry ever added.
    pub last_id: StreamId,
    /// Id of the first entry (types 19 and 21 only).
    pub first_id: Option<StreamId>,
    /// Highest id deleted (types 19 and 21 only).
    pub max_deleted_id: Option<StreamId>,
    /// Entries ever added (types 19 and 21 only).
    pub entries_added: Option<u64>,
    /// Consumer groups.
    pub groups: Vec<StreamGroup>,
}

fn stream_id(c: &mut Cursor<'_>) -> Result<StreamId, Stop> {
    Ok(StreamId {
        ms: c.plain_length()?,
        seq: c.plain_length()?,
    })
}

/// A raw 128-bit id as the PELs store it: ms and seq, big-endian.
fn raw_id(c: &mut Cursor<'_>) -> Result<StreamId, Stop> {
    let b: [u8; 16] = c.array()?;
    Ok(id_from_be(&b))
}

fn id_from_be(b: &[u8; 16]) -> StreamId {
    let (ms, seq) = b.split_at(8);
    StreamId {
        ms: u64::from_be_bytes(ms.try_into().unwrap_or_default()),
        seq: u64::from_be_bytes(seq.try_into().unwrap_or_default()),
    }
}

pub(crate) fn read(c: &mut Cursor<'_>, type_id: u8, max: usize) -> Result<Stream, Stop> {
    let v2 = type_id >= types::STREAM_LISTPACKS_2;
    let nodes = c.plain_length()?;
    let mut entries = Vec::new();
    for _ in 0..nodes {
        let p = c.pos();
        let key = c.string(max)?;
        let master: [u8; 16] = key
            .as_slice()
            .try_into()
            .map_err(|_| malformed(p, format!("stream node key is {} bytes, not 16", key.len())))?;
        let p = c.pos();
        let blob = c.string_ref(max)?;
        let budget = blob
            .len()
            .saturating_mul(MAX_EXPANSION)
            .saturating_add(EXPANSION_ALLOWANCE);
        let lp = encodings::listpack(&blob).map_err(blob_err(p))?;
        node_entries(id_from_be(&master), lp, budget, &mut entries).map_err(blob_err(p))?;
    }
    let length = c.plain_length()?;
    let last_id = stream_id(c)?;
    let (first_id, max_deleted_id, entries_added) = if v2 {
        (
            Some(stream_id(c)?),
            Some(stream_id(c)?),
            Some(c.plain_length()?),
        )
    } else {
        (None, None, None)
    };
    let ngroups = c.plain_length()?;
    let mut groups = Vec::with_capacity(len_usize(ngroups));
    for _ in 0..ngroups {
        let name = c.string(max)?;
        let last_id = stream_id(c)?;
        let entries_read = if v2 { Some(c.plain_length()?) } else { None };
        let npending = c.plain_length()?;
        let mut pending = Vec::with_capacity(len_usize(npending));
        for _ in 0..npending {
            pending.push(PendingEntry {
                id: raw_id(c)?,
                delivery_time_ms: ms_time(c)?,
                delivery_count: c.plain_length()?,
            });
        }
        let nconsumers = c.plain_length()?;
        let mut consumers = Vec::with_capacity(len_usize(nconsumers));
        for _ in 0..nconsumers {
            let name = c.string(max)?;
            let seen_time_ms = ms_time(c)?;
            let active_time_ms = if type_id >= types::STREAM_LISTPACKS_3 {
                Some(ms_time(c)?)
            } else {
                None
            };
            let n = c.plain_length()?;
            let mut owned = Vec::with_capacity(len_usize(n));
            for _ in 0..n {
                let p = c.pos();
                let id = raw_id(c)?;
                if pending.binary_search_by_key(&id, |e| e.id).is_err() {
                    return Err(malformed(
                        p,
                        format!("consumer's pending entry {id} is not in its group's PEL"),
                    ));
                }
                owned.push(id);
            }
            consumers.push(StreamConsumer {
                name,
                seen_time_ms,
                active_time_ms,
                pending: owned,
            });
        }
        groups.push(StreamGroup {
            name,
            last_id,
            entries_read,
            pending,
            consumers,
        });
    }
    Ok(Stream {
        length,
        entries,
        nodes,
        last_id,
        first_id,
        max_deleted_id,
        entries_added,
        groups,
    })
}

/// Walks a node's listpack, in order, through the fields it must hold.
struct Items {
    it: std::vec::IntoIter<Vec<u8>>,
}

impl Items {
    fn next(&mut self, what: &str) -> Result<Vec<u8>, Reason> {
        self.it
            .next()
            .ok_or_else(|| format!("stream node listpack ends before its {what}"))
    }

    fn int(&mut self, what: &str) -> Result<i64, Reason> {
        let v = self.next(what)?;
        std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("stream node's {what} is not an integer"))
    }

    fn count(&mut self, what: &str) -> Result<usize, Reason> {
        let n = self.int(what)?;
        usize::try_from(n).map_err(|_| format!("stream node's {what} is negative ({n})"))
    }
}

/// Appends the live entries of one node.
fn node_entries(
    master: StreamId,
    lp: Vec<Vec<u8>>,
    mut budget: usize,
    out: &mut Vec<StreamEntry>,
) -> Result<(), Reason> {
    if lp.is_empty() {
        return Err("stream node listpack is empty".to_owned());
    }
    let mut it = Items { it: lp.into_iter() };
    let live = it.count("entry count")?;
    let deleted = it.count("deleted count")?;
    let nfields = it.count("master field count")?;
    let mut master_fields = Vec::with_capacity(nfields.min(1024));
    for _ in 0..nfields {
        master_fields.push(it.next("master field")?);
    }
    // What one entry that shares the master's fields costs in copies.
    let copied = master_fields.iter().map(Vec::len).sum::<usize>() + 16 * master_fields.len();
    if it.int("master entry terminator")? != 0 {
        return Err("stream node's master entry is not terminated by 0".to_owned());
    }
    let (mut seen_live, mut seen_deleted) = (0usize, 0usize);
    while it.it.len() > 0 {
        let flags = it.int("entry flags")?;
        let ms_diff = it.int("entry id")?;
        let seq_diff = it.int("entry id")?;
        let id = StreamId {
            ms: master.ms.wrapping_add_signed(ms_diff),
            seq: master.seq.wrapping_add_signed(seq_diff),
        };
        let fields = if flags & FLAG_SAMEFIELDS != 0 {
            budget = budget.checked_sub(copied).ok_or_else(|| {
                format!("stream node expands to over {MAX_EXPANSION} times its size")
            })?;
            let mut f = Vec::with_capacity(master_fields.len());
            for name in &master_fields {
                f.push((name.clone(), it.next("entry value")?));
            }
            f
        } else {
            let n = it.count("entry field count")?;
            let mut f = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                let name = it.next("entry field")?;
                f.push((name, it.next("entry value")?));
            }
            f
        };
        it.int("entry's element count")?;
        if flags & FLAG_DELETED != 0 {
            seen_deleted += 1;
        } else {
            seen_live += 1;
            if out.last().is_some_and(|last| last.id >= id) {
                return Err(format!("stream entry {id} is out of order"));
            }
            out.push(StreamEntry { id, fields });
        }
    }
    if (seen_live, seen_deleted) != (live, deleted) {
        return Err(format!(
            "stream node announces {live} live and {deleted} deleted entries but holds \
             {seen_live} and {seen_deleted}"
        ));
    }
    Ok(())
}
