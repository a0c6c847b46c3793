//! SQLite under I/O errors: the real binary runs with every file it writes limited in
//! size (`ulimit -f`, SIGXFSZ ignored), so once its write-ahead log reaches the limit
//! every write fails with EFBIG (SQLITE_FULL / SQLITE_IOERR), as on a full disk, while
//! callers keep sending. An acknowledgement must mean the batch committed: after a
//! restart without the limit, every acknowledged request exists and is delivered. Always
//! SQLite (the PostgreSQL faults are in `replicas::faults`); bounded in time and calls.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::post;
use convmsg::grpc::pb;
use tonic::Code;

use crate::helpers::{
    Backend, TestDatabase, backend, start_server_process, start_server_process_with_file_limit, write_webhook_config,
};

const CALLERS: usize = 12;
/// The size every file of the server may reach: room for the schema and a few hundred
/// accepts, far below the write-ahead log's first checkpoint (4 MB).
const MAX_FILE_KIB: u64 = 2_048;

#[tokio::test]
async fn a_full_disk_under_concurrent_accepts_never_acknowledges_an_uncommitted_request() {
    if backend() == Backend::Postgres {
        return; // SQLite-only: it ran in the suite's SQLite pass.
    }
    let test = tokio::time::timeout(Duration::from_secs(120), async {
        // A receiver that records every webhook-id it is sent.
        let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = format!("http://{}/hook", listener.local_addr().unwrap());
        let record = seen.clone();
        let receiver = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap| {
                let record = record.clone();
                async move {
                    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    record.lock().unwrap().insert(id.to_owned());
                    "{}"
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

        let db = TestDatabase::sqlite();
        let dir = tempfile::tempdir().unwrap();
        let token = convmsg::domain::principal::generate_token();
        let held = write_webhook_config(dir.path(), &db.url, &token, &hook, 1, "[dispatch]\nenabled = false\n");
        let server = start_server_process_with_file_limit(&held, MAX_FILE_KIB).await;
        let user = server.end_user_ids(&token).await.remove(0);

        // Callers send until the disk has been full for a while.
        let mut callers = Vec::new();
        for _ in 0..CALLERS {
            let mut client = server.conv(&token).await;
            let user = user.clone();
            callers.push(tokio::spawn(async move {
                let (mut acknowledged, mut refused) = (Vec::new(), 0usize);
                let request = pb::SendConversationMessagesRequest {
                    message_definition_name: "Ping".into(),
                    messaging_end_user_ids: vec![user],
                    ..Default::default()
                };
                while refused < 40 && acknowledged.len() < 2_000 {
                    match client.send_conversation_messages(request.clone()).await {
                        Ok(reply) => {
                            let reply = reply.into_inner();
                            acknowledged.push((reply.request_id, reply.message_identifiers));
                        }
                        Err(status) if status.code() == Code::Unavailable => refused += 1,
                        Err(status) => panic!("a send on a full disk answered {status:?}"),
                    }
                }
                (acknowledged, refused)
            }));
        }
        let (mut acknowledged, mut refused) = (Vec::new(), 0);
        for caller in callers {
            let (a, r) = caller.await.unwrap();
            acknowledged.extend(a);
            refused += r;
        }
        println!("full disk: {} acknowledged, {refused} refused UNAVAILABLE", acknowledged.len());
        assert!(refused > 0, "the server met the full disk");
        assert!(!acknowledged.is_empty(), "accepts succeeded before the disk filled");
        drop(server); // killed (kill_on_drop): no clean shutdown

        // Restarted without the limit and with delivery on: everything acknowledged is
        // there and is delivered.
        let free = write_webhook_config(
            dir.path(),
            &db.url,
            &token,
            &hook,
            1,
            "[dispatch]\npoll_interval_ms = 50\nmax_in_progress_requests = 500\n",
        );
        let server = start_server_process(&free, None).await;
        let mut client = server.conv(&token).await;
        for (request_id, _) in &acknowledged {
            let found = client.get_request_status(pb::GetRequestStatusRequest { request_id: request_id.clone() }).await;
            assert!(found.is_ok(), "acknowledged request {request_id} is stored: {found:?}");
        }
        let messages: Vec<String> = acknowledged.iter().flat_map(|(_, m)| m.clone()).collect();
        let delivered = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let missing = {
                    let seen = seen.lock().unwrap();
                    messages.iter().filter(|m| !seen.contains(*m)).count()
                };
                if missing == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(delivered.is_ok(), "every acknowledged message reached the receiver within 60 s");
    })
    .await;
    assert!(test.is_ok(), "the test finished within 120 s");
}
