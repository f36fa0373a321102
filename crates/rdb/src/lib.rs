//! The RDB format of Redis and Valkey.
//!
//! This crate knows the bytes of an RDB file and nothing else: it reads from
//! any byte stream, performs no I/O of its own and has no network or storage
//! dependency, so it can be fuzzed and reused outside rdbvault.

pub mod commands;
pub mod crc64;
mod encodings;
mod error;
mod head;
pub mod lzf;
mod names;
mod reader;
mod stream;
mod string;
mod value;
mod verify;
mod write;

pub use error::RdbError;
pub use head::{DEFAULT_AUX_LIMIT, MAX_VERSION, Magic, VALKEY_VERSIONS};
pub use names::encoding_name;
pub use reader::{Entry, KeyInfo, Reader, dump_payload};
pub use stream::{PendingEntry, Stream, StreamConsumer, StreamEntry, StreamGroup, StreamId};
pub use value::{HashField, Value, module_type_name, types};
pub use verify::{Checksum, Header, Summary, Verifier};
pub use write::{PayloadError, Writer, payload_version};
