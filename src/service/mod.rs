//! The use cases both doors call — `send`, `status` (read and watch a request),
//! `reads` (queries, listings and replication over many requests), `admin`
//! (provisioning) — on one `Service`. Each checks the caller's scope, turns
//! caller mistakes into field-named violations, and leaves storage to the `Store`. gRPC
//! and REST are thin adapters over these functions. Beside them: `auth` (the token
//! table), `cache` (the accept path's lookups), `events` (in-process change signals).

mod admin;
mod control;
pub use control::{REDRIVE_LIMIT, RedriveSelector};
pub mod auth;
pub mod cache;
pub mod event_endpoints;
pub mod events;
mod reads;
mod send;
mod status;
pub mod tokens;

pub use reads::{Cursor, Deleted, QueryPage, Updated};

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::domain::ids::IdKind;
use crate::domain::violation::quoted;
use crate::domain::{ErrorKind, RecordId, Violation};
use crate::error::AppError;
use crate::store::{Key, Store};
use cache::Lookups;
use events::Events;

/// Default and largest page sizes of the listings.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

#[derive(Clone)]
pub struct Service {
    store: Arc<dyn Store>,
    /// The accept path's lookups, cached (see `cache`).
    lookups: Arc<Lookups>,
    clock: SharedClock,
    events: Events,
}

/// A listing request as both doors give it.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub page_size: i32,
    pub page_token: String,
}

impl PageRequest {
    fn parse(&self) -> Result<(Option<RecordId>, u32), AppError> {
        let size = match self.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 || n as u32 > MAX_PAGE_SIZE => {
                return Err(AppError::invalid(Violation::new(
                    "page_size",
                    ErrorKind::InvalidInput,
                    format!("page_size must be between 1 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})"),
                )));
            }
            n => n as u32,
        };
        let after = if self.page_token.is_empty() {
            None
        } else {
            Some(RecordId::parse_any(&self.page_token).map_err(|_| {
                AppError::invalid(Violation::new(
                    "page_token",
                    ErrorKind::InvalidInput,
                    "page_token is not one this server returned",
                ))
            })?)
        };
        Ok((after, size))
    }
}

/// Parses a caller-given id, naming the field when it is malformed.
pub fn parse_id(field: &str, raw: &str, kind: IdKind) -> Result<RecordId, AppError> {
    RecordId::parse(raw.trim(), kind).map_err(|e| {
        AppError::invalid(Violation::new(
            field,
            ErrorKind::MalformedId,
            format!("{} is not a valid id: {e}", quoted(raw)),
        ))
    })
}

/// Ids are one namespace across tenants, so an id given through the API may only address
/// a record of the caller's tenant: new records get generated ids (fixed ones are the
/// operator's, in the config file). The refusal is the same whether another tenant has
/// the id or nobody does, so it reveals nothing and nothing can be claimed.
fn not_this_tenants(field: &str, what: &str, id: &RecordId) -> Violation {
    Violation::new(
        field,
        ErrorKind::InvalidIdField,
        format!(
            "no {what} {id} in this tenant: an id given here addresses an existing record; leave it empty to create \
             one (its id is generated)"
        ),
    )
}

/// An id or a unique name: ids are recognised by their key prefix and shape.
fn id_or_name(raw: &str, kind: IdKind) -> Key {
    match RecordId::parse(raw.trim(), kind) {
        Ok(id) => Key::Id(id),
        Err(_) => Key::Name(raw.trim().to_owned()),
    }
}

impl Service {
    pub fn new(store: Arc<dyn Store>, clock: SharedClock, events: Events) -> Self {
        Service { store, clock, events, lookups: Arc::default() }
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}
