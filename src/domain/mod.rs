//! Pure domain types and rules: ids, picklists, records, parameter typing, send-request
//! validation, the request query model and its SOQL front end. Nothing here does I/O or
//! knows about sqlx, tonic or axum.

pub mod admin;
pub mod delivery;
pub mod events;
pub mod ids;
pub mod model;
pub mod params;
pub mod principal;
pub mod query;
pub mod rates;
pub mod reason;
pub mod receipt;
pub mod replication;
pub mod schedule;
pub mod send;
pub mod soql;
pub mod violation;

pub use ids::{IdKind, RecordId};

/// The private field that seals a checked domain type (`send::NewSendRequest`, the
/// `admin::*Upsert`s, `params::ParamValue`): outside its module no one can write a value out field by field
/// (private fields forbid struct literals and `..` updates there), so the only way to
/// one is its checking constructor. Their other fields stay readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checked;
pub use violation::{ErrorKind, Violation};
