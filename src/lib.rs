//! convmsg — send templated conversation messages to messaging end users, the job of
//! Salesforce's *Send Conversation Messages* action, self-hosted.
//!
//! Layout: `domain` holds pure types and rules; `store` the durable state behind one
//! trait (SQLite embedded, PostgreSQL for several replicas); `retention` purges old
//! completed requests; `service` the use cases both doors share; `grpc` the tonic
//! adapter and `rest` the Salesforce REST bridge; `admission` the tower stack in front
//! of them; `app` binds the one listener and wires everything, `serve` runs it (plain
//! or `tls`) and drains it on shutdown; `config`, `provision`, `auth`, `telemetry`
//! (logs, traces) and `metrics` (Prometheus) do what they say.
#![forbid(unsafe_code)]

pub mod admission;
pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod demo;
pub mod dispatch;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod lookups;
pub mod metrics;
pub mod providers;
pub mod provision;
pub mod rest;
pub mod retention;
pub mod serve;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tls;
