//! The process: `App` binds the one listener and wires the store, the service, both
//! doors, the dispatcher and the background tasks; `listener` serves it (plain or
//! `tls`) and drains it on shutdown; `admission` is the tower stack in front of the
//! business endpoints; `provision` applies the config's records at start; `retention`
//! purges old completed requests.

pub mod admission;
pub mod app;
pub mod listener;
pub mod provision;
pub mod retention;
pub mod tls;

pub use app::{App, LIVENESS, open_store};
