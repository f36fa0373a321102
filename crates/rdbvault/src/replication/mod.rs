//! Talking to Redis: RESP, authenticated connections, and (next) the replica
//! handshake that pulls an RDB snapshot.

pub mod cluster;
pub mod conn;
pub mod probe;
pub mod resp;
pub mod snapshot;
pub mod source;
pub mod tls;

pub use conn::{ConnError, Connection, Endpoint};
