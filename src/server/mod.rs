//! The process: `App` binds the one listener and wires the store, the service, both
//! doors, the dispatcher and the background tasks; `listener` serves it (plain or
//! `tls`) and drains it on shutdown; `admission` bounds the business endpoints' calls and
//! `observe` gives them spans and call metrics; `provision` applies the config's records at start; `retention`
//! purges old completed requests.

pub mod admission;
pub mod app;
pub mod listener;
pub mod observe;
pub mod provision;
pub mod retention;
pub mod tls;

pub use app::{App, LIVENESS, open_store};

/// The version `serve` logs and `--version` prints: the crate's, with the git revision
/// it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("CONVMSG_GIT_REVISION"), ")");
