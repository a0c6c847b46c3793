//! convmsg — send templated conversation messages to messaging end users, the job of
//! Salesforce's *Send Conversation Messages* action, self-hosted.
//!
//! The folders follow the data flow, and each layer uses only the ones below it:
//!
//! - `domain` — pure types and rules (ids, parameters, validation, gating, rendering,
//!   principals); no I/O.
//! - `store` — the durable state behind one trait: SQLite embedded, PostgreSQL for
//!   several replicas.
//! - `service` — the use cases both doors share (send, status, admin), the token table,
//!   the accept path's caches and the in-process change signals.
//! - `dispatch` — the claim loop and the delivery of claimed requests; `providers` — one
//!   file per channel provider.
//! - `grpc` and `rest` — the two doors, thin adapters over `service`.
//! - `server` — the process: `App` wires everything on the one listener (admission,
//!   TLS, probes), provisions the config's records and runs the background tasks.
//! - `cli` — the command line: `serve`, and the client commands `send`, `status`, `demo`.
//! - `config`, `error` (the one error table), `clock`, `telemetry` (logs, traces) and
//!   `metrics` (Prometheus) are shared by all.
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod metrics;
pub mod providers;
pub mod receipts;
pub mod rest;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
