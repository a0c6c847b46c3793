//! Integration tests: the real server on 127.0.0.1:0 with a fresh SQLite file per test,
//! driven through generated clients.

mod fake_provider;
mod helpers;

mod accept;
mod crash;
mod delivery;
mod ops;
mod python;
mod shutdown;
mod tls;
mod version;
