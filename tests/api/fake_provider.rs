//! An in-process provider for delivery tests: records every send, counts how many are
//! in flight (overall, per request, distinct requests), can hold sends until released,
//! and answers from a script (per recipient) or with success.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use convmsg::clock::{Clock, ManualClock};
use convmsg::providers::{Delivered, FailureReason, OutboundMessage, Provider, ProviderError, ProviderName};
use tokio::sync::Semaphore;

#[derive(Default)]
struct State {
    sent: Vec<(i64, OutboundMessage)>,
    in_flight: HashMap<String, usize>,
    max_in_flight_requests: usize,
    max_in_flight_per_request: usize,
    /// Scripted answers by recipient platform key, used in order.
    script: HashMap<String, VecDeque<Result<Delivered, ProviderError>>>,
}

#[derive(Clone)]
pub struct FakeProvider {
    state: Arc<Mutex<State>>,
    /// When set, each send waits for a permit.
    gate: Option<Arc<Semaphore>>,
    /// The server's clock, set once the server exists.
    clock: Arc<Mutex<ManualClock>>,
    /// The provider it stands in for (`webhook` unless `named`).
    name: ProviderName,
}

impl FakeProvider {
    pub fn new(clock: ManualClock) -> Self {
        FakeProvider {
            state: Arc::default(),
            gate: None,
            clock: Arc::new(Mutex::new(clock)),
            name: ProviderName::Webhook,
        }
    }

    /// Stands in for the provider `name` (`twilio`, `whatsapp`, …).
    pub fn named(name: &str, clock: ManualClock) -> Self {
        FakeProvider { name: ProviderName::parse(name).expect("a provider name"), ..Self::new(clock) }
    }

    /// Sends wait until `release` is called.
    pub fn holding(clock: ManualClock) -> Self {
        FakeProvider { gate: Some(Arc::new(Semaphore::new(0))), ..Self::new(clock) }
    }

    pub fn use_clock(&self, clock: ManualClock) {
        *self.clock.lock().unwrap() = clock;
    }

    pub fn release_all(&self) {
        if let Some(gate) = &self.gate {
            gate.add_permits(1_000_000);
        }
    }

    /// Lets `n` held sends (or later ones) through.
    pub fn release(&self, n: usize) {
        if let Some(gate) = &self.gate {
            gate.add_permits(n);
        }
    }

    pub fn script(&self, recipient: &str, answers: Vec<Result<Delivered, ProviderError>>) {
        self.state.lock().unwrap().script.insert(recipient.to_owned(), answers.into());
    }

    pub fn sent(&self) -> Vec<(i64, OutboundMessage)> {
        self.state.lock().unwrap().sent.clone()
    }

    pub fn in_flight_requests(&self) -> usize {
        self.state.lock().unwrap().in_flight.values().filter(|n| **n > 0).count()
    }

    pub fn max_in_flight_requests(&self) -> usize {
        self.state.lock().unwrap().max_in_flight_requests
    }

    pub fn max_in_flight_per_request(&self) -> usize {
        self.state.lock().unwrap().max_in_flight_per_request
    }

    /// Waits (bounded) until `n` distinct requests have sends in flight.
    pub async fn wait_for_in_flight_requests(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(20), async {
            while self.in_flight_requests() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} requests never got in flight (now {})", self.in_flight_requests()));
    }
}

pub fn transient(retry_after: Option<Duration>) -> Result<Delivered, ProviderError> {
    Err(ProviderError::Transient { detail: "503 from fake".into(), retry_after })
}

pub fn permanent(reason: &str) -> Result<Delivered, ProviderError> {
    let reason = FailureReason::parse(reason).expect("a failure reason");
    Err(ProviderError::Permanent { reason, detail: "rejected by fake".into() })
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> ProviderName {
        self.name
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, ProviderError> {
        let answer = {
            let mut s = self.state.lock().unwrap();
            let now = self.clock.lock().unwrap().now_ms();
            s.sent.push((now, message.clone()));
            let n = s.in_flight.entry(message.request_id.clone()).or_default();
            *n += 1;
            let per_request = *n;
            s.max_in_flight_per_request = s.max_in_flight_per_request.max(per_request);
            let requests = s.in_flight.values().filter(|n| **n > 0).count();
            s.max_in_flight_requests = s.max_in_flight_requests.max(requests);
            s.script.get_mut(&message.recipient).and_then(VecDeque::pop_front)
        };
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        let mut s = self.state.lock().unwrap();
        *s.in_flight.get_mut(&message.request_id).unwrap() -= 1;
        answer.unwrap_or_else(|| {
            Ok(Delivered { provider_message_id: Some(format!("fake-{}", message.message_identifier)) })
        })
    }
}

/// Distinct requests seen by the provider.
pub fn requests_seen(sent: &[(i64, OutboundMessage)]) -> HashSet<String> {
    sent.iter().map(|(_, m)| m.request_id.clone()).collect()
}
