//! Read-through caches for the two lookups every accept makes, so a burst of sends does
//! not cost two database round trips each.
//!
//! - End users: accept reads only an end user's existence in the tenant and its platform
//!   key. Their channel and platform key are set at creation, so a found end user stays
//!   true until it is deleted — forgotten here at once when deleted through this process;
//!   another replica's delete is not seen, and delivery fails such a message
//!   `MessagingEndUserDeleted`. Unknown ids are always asked of the store again.
//! - Messaging components can change (activation, parameters), so they are kept for
//!   `COMPONENT_TTL` and dropped at once when one is upserted through this process;
//!   another replica's change is seen within the TTL.
//!
//! Both maps are bounded: past their size they are emptied and refilled on demand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::RecordId;
use crate::domain::model::MessageDefinition;

pub const COMPONENT_TTL: Duration = Duration::from_secs(1);
const MAX_END_USERS: usize = 200_000;
const MAX_COMPONENTS: usize = 10_000;

/// A component and when it was read.
type CachedComponent = (Instant, Arc<MessageDefinition>);

#[derive(Default)]
pub struct Lookups {
    /// (tenant, end user id) → platform key.
    end_users: Mutex<HashMap<(String, RecordId), String>>,
    /// (tenant, API name) → when read, and the component.
    components: Mutex<HashMap<(String, String), CachedComponent>>,
}

impl Lookups {
    /// The platform keys of the known end users among `ids`; the rest are to be looked up.
    pub fn end_users(&self, tenant: &str, ids: &[RecordId]) -> (HashMap<RecordId, String>, Vec<RecordId>) {
        let cache = self.end_users.lock().unwrap_or_else(|p| p.into_inner());
        let mut known = HashMap::with_capacity(ids.len());
        let mut unknown = Vec::new();
        for id in ids {
            match cache.get(&(tenant.to_owned(), id.clone())) {
                Some(key) => {
                    known.insert(id.clone(), key.clone());
                }
                None => unknown.push(id.clone()),
            }
        }
        (known, unknown)
    }

    pub fn remember_end_users(&self, tenant: &str, found: impl IntoIterator<Item = (RecordId, String)>) {
        let mut cache = self.end_users.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > MAX_END_USERS {
            cache.clear();
        }
        cache.extend(found.into_iter().map(|(id, key)| ((tenant.to_owned(), id), key)));
    }

    pub fn component(&self, tenant: &str, api_name: &str) -> Option<Arc<MessageDefinition>> {
        let cache = self.components.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&(tenant.to_owned(), api_name.to_owned()))
            .filter(|(read, _)| read.elapsed() < COMPONENT_TTL)
            .map(|(_, d)| d.clone())
    }

    pub fn remember_component(&self, tenant: &str, definition: Arc<MessageDefinition>) {
        let mut cache = self.components.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > MAX_COMPONENTS {
            cache.clear();
        }
        cache.insert((tenant.to_owned(), definition.api_name.clone()), (Instant::now(), definition));
    }

    /// An end user was deleted through this process: accepts here refuse it at once
    /// (another replica's cache may still accept it; delivery then fails the message
    /// `MessagingEndUserDeleted`).
    pub fn forget_end_user(&self, tenant: &str, id: &RecordId) {
        self.end_users.lock().unwrap_or_else(|p| p.into_inner()).remove(&(tenant.to_owned(), id.clone()));
    }

    /// A component changed through this process: forget them all (upserts are rare).
    pub fn forget_components(&self) {
        self.components.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::IdKind;

    #[test]
    fn end_users_are_remembered_per_tenant_and_unknown_ones_are_left_to_look_up() {
        let l = Lookups::default();
        let (a, b) = (RecordId::generate(IdKind::MessagingEndUser), RecordId::generate(IdKind::MessagingEndUser));
        l.remember_end_users("t1", [(a.clone(), "+1".to_owned())]);
        let (known, unknown) = l.end_users("t1", &[a.clone(), b.clone()]);
        assert_eq!(known.get(&a).map(String::as_str), Some("+1"));
        assert_eq!(unknown, vec![b]);
        let (known, _) = l.end_users("t2", &[a]);
        assert!(known.is_empty(), "another tenant does not see it");
    }
}
