//! rdbvault: a self-hosted backup service for Redis and Valkey that speaks
//! the Huawei Cloud DCS v2 backup API.
//!
//! A map for a first read (see also `ARCHITECTURE.md`):
//! - [`server`]: `run(listener, config, shutdown)`, the entry point of `serve` and of the tests;
//! - [`api`]: routes, request validation, the DCS error catalogue, OpenAPI;
//! - [`auth`]: AK/SK (`SDK-HMAC-SHA256`) verification and project scoping;
//! - [`meta`]: instances, backups, jobs, link keys in SQLite or PostgreSQL;
//! - [`replication`]: RESP connections to Redis, node choice, the replica handshake that pulls a snapshot;
//! - [`objects`]: streamed, verified-then-published uploads to the object store, and the
//!   signing of the local store's download links;
//! - [`jobs`]: the worker pool that runs backups, and crash recovery;
//! - [`cli`]: the command line: `serve`, and the client commands (`instance`, `backup`,
//!   `inspect`), which sign their requests like the SDK;
//! - [`config`]: defaults, TOML file, `RDBVAULT_*` environment;
//! - [`redis_addr`]: `host:port` parsing and display.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod http;
pub(crate) mod jobs;
pub mod master_key;
pub mod meta;
pub(crate) mod object_keys;
pub mod objects;
pub mod private_files;
pub mod quota;
pub mod redis_addr;
pub mod replication;
pub mod schedule;
pub mod server;
