//! convmsg — send templated conversation messages to messaging end users, the job of
//! Salesforce's *Send Conversation Messages* action, self-hosted.
//!
//! The folders follow the data flow, and each layer uses only the ones below it (bottom
//! first; `layering.rs` reads `src/` and fails the tests on an edge that points up):
//!
//! 1. `domain` — pure types and rules (ids, parameters, validation, gating, rendering,
//!    principals); no I/O. `clock`; `telemetry` — logs, traces, trace context, its config
//!    section and `error_chain`; it knows no routes.
//! 2. `store` — the durable state behind one trait: SQLite embedded, PostgreSQL for
//!    several replicas, one shared SQL text for both.
//! 3. `error` — the one error table (each kind to a gRPC code, an HTTP status and a
//!    Salesforce `errorCode`). 4. `metrics` (Prometheus).
//! 5. `providers` — one file per channel provider. 6. `service` — the use cases both
//!    doors share (send, status, admin), the token table, caches, change signals.
//! 7. `dispatch` — the claim loop and the delivery of claimed requests.
//! 8. `config` — composes the sections the subsystems own and loads file, env and flags.
//! 9. `grpc` and `rest` — the two doors, thin adapters over `service`; neither uses the other.
//! 10. `server` — the process: `App` wires everything on the one listener, with the one
//!     tower stack (admission, `observe`), TLS, probes, provisioning, background tasks.
//! 11. `cli` — the command line: `serve`, and the client commands `send`, `status`, `demo`.
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

#[cfg(test)]
mod layering;
