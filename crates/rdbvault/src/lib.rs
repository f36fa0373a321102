//! rdbvault: a self-hosted backup service for Redis and Valkey that speaks
//! the Huawei Cloud DCS v2 backup API.
//!
//! A map for a first read (see also `ARCHITECTURE.md`):
//! - [`server`]: `run(listener, config, shutdown)`, the entry point of `serve` and of the tests;
//! - [`api`]: routes, request validation, the DCS error catalogue, OpenAPI;
//! - [`auth`]: AK/SK (`SDK-HMAC-SHA256`) verification and project scoping;
//! - [`meta`]: instances, backups, restores, jobs in SQLite or PostgreSQL;
//! - [`replication`]: RESP connections to Redis, node choice, the replica handshake that pulls a snapshot;
//! - [`objects`]: streamed, verified-then-published uploads to the object store;
//! - [`rdb_stream`]: the `rdb` reader fed from async I/O;
//! - [`jobs`]: the worker pool that runs backups, and crash recovery;
//! - [`cli`]: the client commands, which sign their requests like the SDK;
//! - [`config`]: defaults, TOML file, `RDBVAULT_*` environment.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod jobs;
pub mod meta;
pub mod objects;
pub mod rdb_stream;
pub mod redis_addr;
pub mod replication;
pub mod server;
