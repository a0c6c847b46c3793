//! A local stand-in for every provider's API (webhook gateway, WhatsApp Cloud API,
//! Twilio): it records each request and answers what all three accept, and while
//! `hold` is set it keeps requests waiting, so tests can see how many are in flight.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use tokio::sync::watch;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    in_flight: Arc<Mutex<(usize, usize)>>,
    hold: Arc<watch::Sender<bool>>,
    changed: Arc<watch::Sender<usize>>,
}

impl Receiver {
    /// Listens on 127.0.0.1; returns the receiver and its base URL.
    pub async fn start(holding: bool) -> (Receiver, String) {
        let receiver = Receiver {
            seen: Arc::default(),
            in_flight: Arc::default(),
            hold: Arc::new(watch::channel(holding).0),
            changed: Arc::new(watch::channel(0).0),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(receive).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The most requests that were waiting for an answer at once.
    pub fn max_in_flight(&self) -> usize {
        self.in_flight.lock().unwrap().1
    }

    pub fn release(&self) {
        self.hold.send_replace(false);
    }

    /// Waits (bounded) until `n` requests are waiting for an answer at the same time.
    pub async fn until_in_flight(&self, n: usize, within: Duration) {
        let mut changed = self.changed.subscribe();
        let reached = tokio::time::timeout(within, async {
            while self.in_flight.lock().unwrap().0 < n {
                changed.changed().await.unwrap();
            }
        })
        .await;
        assert!(
            reached.is_ok(),
            "{n} requests in flight at once within {within:?}; the most were {}",
            self.max_in_flight()
        );
    }
}

async fn receive(State(r): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> String {
    r.seen.lock().unwrap().push(Seen { path: uri.path().to_owned(), headers, body });
    {
        let mut in_flight = r.in_flight.lock().unwrap();
        in_flight.0 += 1;
        in_flight.1 = in_flight.1.max(in_flight.0);
    }
    r.changed.send_modify(|n| *n += 1);
    let mut hold = r.hold.subscribe();
    while *hold.borrow_and_update() {
        if hold.changed().await.is_err() {
            break;
        }
    }
    r.in_flight.lock().unwrap().0 -= 1;
    r.changed.send_modify(|n| *n += 1);
    // WhatsApp reads messages[0].id, Twilio sid, a webhook gateway any 2xx.
    r#"{"messages":[{"id":"wamid.settings"}],"sid":"SMsettings","status":"queued"}"#.to_owned()
}
