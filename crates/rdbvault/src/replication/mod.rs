//! Talking to Redis: RESP, authenticated TCP/TLS connections, node probes,
//! cluster topology, the choice of the node to pull from, and the replica
//! handshake that pulls an RDB snapshot.

pub mod cluster;
pub(crate) mod conn;
pub(crate) mod copy;
pub(crate) mod probe;
pub mod resp;
pub(crate) mod snapshot;
pub(crate) mod source;
pub mod tls;

pub use conn::{ConnError, Connection, Endpoint};
