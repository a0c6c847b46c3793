//! Integration tests: the real server on 127.0.0.1:0 with a fresh database per test —
//! SQLite, or PostgreSQL with `CONVMSG_TEST_DATABASE=postgres` — driven through generated
//! clients. `replicas` always runs on PostgreSQL: several `convmsg serve` processes on
//! one database, replica loss, and a database outage on a private instance.

mod fake_provider;
mod helpers;

mod accept;
mod availability;
mod cli;
mod client_gone;
mod control;
mod crash;
mod deletes;
mod delivery;
mod disk_full;
mod events;
mod list_requests;
mod node;
mod ops;
mod python;
mod rate_limits;
mod receipts;
mod redrive;
mod replicas;
mod rest;
mod retention;
mod salesforce_clients;
mod security;
mod settings;
mod shutdown;
mod telemetry;
mod tls;
mod version;
