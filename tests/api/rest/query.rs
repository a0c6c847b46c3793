//! SOQL over HTTP: the query and queryAll resources in Salesforce's shape (JSON and XML),
//! filters, order, limit and offset, COUNT() and COUNT(field), query-more paging by
//! `nextRecordsUrl`, date literals on the server's clock, tenancy and scopes, and every
//! kind of refusal with Salesforce's error code and a message naming the token.

use futures_util::StreamExt;

use super::*;

const QUERY: &str = "/services/data/v65.0/query";
const DAY: i64 = 86_400_000;

fn q(soql: &str) -> String {
    let mut encoded = String::new();
    for b in soql.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => encoded.push(b as char),
            b' ' => encoded.push('+'),
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    format!("{QUERY}?q={encoded}")
}

/// Sends `n` requests to every end user of `fx`, `concurrency` at a time; their ids in order.
async fn send_many(app: &TestApp, fx: &Fixture, n: usize, concurrency: usize) -> Vec<String> {
    let conv = app.conv().await;
    futures_util::stream::iter(0..n)
        .map(|_| {
            let mut conv = conv.clone();
            let request = fx.request();
            async move { conv.send_conversation_messages(request).await.expect("accepted").into_inner().request_id }
        })
        .buffered(concurrency)
        .collect()
        .await
}

/// Delivers everything due (the dispatcher is driven step by step).
async fn deliver_all(app: &TestApp) {
    while !app.dispatcher.run_once().await.expect("dispatch").is_empty() {}
}

async fn spawn() -> TestApp {
    spawn_app_with(|c| c.dispatch.enabled = false).await
}

#[tokio::test]
async fn a_query_returns_the_selected_fields_of_the_caller_s_requests_in_salesforce_s_shape() {
    let app = spawn().await;
    let fx = app.provision(2).await;
    let client = http(&app);
    let (first, identifiers) = client.accept(input(&fx)).await;
    let (second, _) = client.accept(input(&fx)).await;
    let theirs = app.provision_as(&app.other_token.clone(), 1).await;
    app.conv_as(Some(&app.other_token)).await.send_conversation_messages(theirs.request()).await.unwrap();

    let answer = client
        .get(&q("SELECT Name, Id, RequestStatus, TotalMessageCount, PendingMessageIdentifiers, CompletedDate \
                 FROM ConvMessageSendRequest ORDER BY Name"))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), "application/json;charset=UTF-8");
    let body = answer.json();
    assert_eq!(keys(&body), ["done", "records", "totalSize"]);
    assert_eq!((body["totalSize"].clone(), body["done"].clone()), (json!(2), json!(true)));
    // Keys in Salesforce's order: the result's, then each record's fields as selected.
    let at = |key: &str| answer.body.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("no {key}"));
    let order = ["totalSize", "done", "records", "attributes", "Name", "Id", "RequestStatus", "TotalMessageCount"];
    assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{}", answer.body);
    assert!(at("PendingMessageIdentifiers") < at("CompletedDate"));
    let record = &body["records"][0];
    assert_eq!(record.as_object().unwrap().len(), 7);
    assert_eq!(
        record["attributes"],
        json!({"type": "ConvMessageSendRequest", "url": format!("/services/data/v65.0/sobjects/ConvMessageSendRequest/{first}")})
    );
    assert_eq!(record["Name"], "MSJ-00000001");
    assert_eq!(record["RequestStatus"], "Pending");
    assert_eq!(record["TotalMessageCount"], 2);
    assert_eq!(record["PendingMessageIdentifiers"], json!(identifiers));
    assert_eq!(record["CompletedDate"], Value::Null);
    assert_eq!(body["records"][1]["Id"], json!(second));

    // The same through queryAll, and with the trailing slash Salesforce's examples use.
    let all = client.get(&q("SELECT Id FROM ConvMessageSendRequest").replace("/query?", "/queryAll/?")).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(all.json()["totalSize"], 2);
    app.stop().await;
}

#[tokio::test]
async fn where_order_by_limit_and_offset_narrow_and_order_the_records() {
    let app = spawn().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    // Three delivered (Completed, one message each), then three pending.
    let mut ids = send_many(&app, &fx, 3, 1).await;
    deliver_all(&app).await;
    ids.extend(send_many(&app, &fx, 3, 1).await);
    let names = |body: &Value| -> Vec<String> {
        body["records"].as_array().unwrap().iter().map(|r| r["Name"].as_str().unwrap().to_owned()).collect()
    };
    let completed = client
        .get(&q(
            "SELECT Name FROM ConvMessageSendRequest WHERE RequestStatus = 'completed' AND SuccessMessageCount = 1 \
                 ORDER BY Name DESC",
        ))
        .await
        .json();
    assert_eq!(names(&completed), ["MSJ-00000003", "MSJ-00000002", "MSJ-00000001"]);
    let page = client
        .get(&q("SELECT Name FROM ConvMessageSendRequest WHERE NOT (Name IN ('MSJ-00000001', 'msj-00000006')) \
                 AND CompletedDate = null ORDER BY CreatedDate, Name LIMIT 2 OFFSET 1"))
        .await
        .json();
    assert_eq!((names(&page), page["totalSize"].clone()), (vec!["MSJ-00000005".to_owned()], json!(1)));
    let like = client.get(&q(r"SELECT Name FROM ConvMessageSendRequest WHERE Name LIKE 'msj-0000000_' AND Name > 'MSJ-00000004' ORDER BY Name")).await;
    assert_eq!(names(&like.json()), ["MSJ-00000005", "MSJ-00000006"]);
    let by_id =
        client.get(&q(&format!("SELECT Name FROM ConvMessageSendRequest WHERE Id = '{}'", &ids[4][..15]))).await;
    assert_eq!(names(&by_id.json()), ["MSJ-00000005"]);
    let definition = client
        .get(&q(&format!(
            "SELECT COUNT() FROM ConvMessageSendRequest WHERE MessageDefinition = '{}' AND ShouldEnforceChannelConsent = false",
            fx.definition.api_name.to_lowercase()
        )))
        .await;
    assert_eq!(definition.json()["totalSize"], 6);
    app.stop().await;
}

#[tokio::test]
async fn count_answers_the_number_of_matches_and_count_of_a_field_one_aggregate_row() {
    let app = spawn().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    send_many(&app, &fx, 5, 2).await;
    let count = client.get(&q("SELECT COUNT() FROM ConvMessageSendRequest WHERE RequestStatus = 'Pending'")).await;
    assert_eq!(count.json(), json!({"totalSize": 5, "done": true, "records": []}));
    let limited = client.get(&q("SELECT COUNT() FROM ConvMessageSendRequest LIMIT 3")).await;
    assert_eq!(limited.json()["totalSize"], 3);
    let aggregate = client.get(&q("SELECT COUNT(Id), COUNT(CompletedDate) done FROM ConvMessageSendRequest")).await;
    assert_eq!(
        aggregate.json(),
        json!({"totalSize": 1, "done": true, "records": [{"attributes": {"type": "AggregateResult"}, "expr0": 5, "done": 0}]})
    );
    let xml = client
        .send(
            client
                .authed(Method::GET, &q("SELECT COUNT(Id) FROM ConvMessageSendRequest"))
                .header("accept", "application/xml"),
        )
        .await;
    let root = xml.xml();
    assert_eq!(root.name, "QueryResult");
    assert_eq!(root.child("records").attribute("type"), "AggregateResult");
    assert_eq!(root.child("records").child("expr0").text, "5");
    app.stop().await;
}

#[tokio::test]
async fn a_large_result_comes_in_batches_linked_by_next_records_url_until_done() {
    let app = spawn().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let ids = send_many(&app, &fx, 450, 16).await;
    let soql = "SELECT Id, Name FROM ConvMessageSendRequest ORDER BY Name";
    let mut seen: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut url = q(soql);
    let mut pages = Vec::new();
    loop {
        let answer =
            client.send(client.authed(Method::GET, &url).header("Sforce-Query-Options", "batchSize=200")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let body = answer.json();
        assert_eq!(body["totalSize"], 450);
        let records = body["records"].as_array().unwrap();
        pages.push(records.len());
        seen.extend(records.iter().map(|r| r["Id"].as_str().unwrap().to_owned()));
        names.extend(records.iter().map(|r| r["Name"].as_str().unwrap().to_owned()));
        if body["done"] == json!(true) {
            assert!(body.get("nextRecordsUrl").is_none());
            break;
        }
        let next = body["nextRecordsUrl"].as_str().unwrap().to_owned();
        let locator = next.strip_prefix("/services/data/v65.0/query/").expect("under /query/");
        assert!(locator.starts_with("01g") && locator.ends_with(&format!("-{}", seen.len())), "{next}");
        url = next;
    }
    assert_eq!(pages, [200, 200, 50]);
    let mut sorted = ids.clone();
    sorted.sort();
    let mut unique = seen.clone();
    unique.sort();
    assert!(unique == sorted, "every request exactly once");
    let expected_names: Vec<String> = (1..=450).map(|i| format!("MSJ-{i:08}")).collect();
    assert!(names == expected_names, "in Name order, every name once");

    // queryAll's locator works on queryAll too; default batches are 2,000, so one page.
    let all = client.get(&q(soql).replace("/query?", "/queryAll?")).await.json();
    assert_eq!((all["done"].clone(), all["records"].as_array().unwrap().len()), (json!(true), 450));

    // XML pages: records carry their attributes, the locator its URL.
    let xml = client
        .send(
            client
                .authed(Method::GET, &q(soql))
                .header("Sforce-Query-Options", "batchSize=200")
                .header("accept", "application/xml"),
        )
        .await;
    let root = xml.xml();
    assert_eq!(
        (root.name.as_str(), root.child("done").text.as_str(), root.child("totalSize").text.as_str()),
        ("QueryResult", "false", "450")
    );
    let records = root.all("records");
    assert_eq!(records.len(), 200);
    assert_eq!(records[0].attribute("type"), "ConvMessageSendRequest");
    assert_eq!(records[0].child("Id").text, seen[0]);
    let next = root.child("nextRecordsUrl").text.clone();
    let second = client.send(client.authed(Method::GET, &next.replace("/query/", "/queryAll/"))).await.json();
    assert_eq!(second["records"][0]["Id"], json!(seen[200]));
    app.stop().await;
}

#[tokio::test]
async fn date_literals_are_evaluated_on_the_server_s_clock_in_utc() {
    let app = spawn().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let three_days_ago = send_many(&app, &fx, 1, 1).await;
    app.clock.advance_ms(2 * DAY);
    let yesterday = send_many(&app, &fx, 2, 1).await;
    app.clock.advance_ms(DAY + 3_600_000);
    let today = send_many(&app, &fx, 1, 1).await;
    let ids = |soql: &str| {
        let client = &client;
        let url = q(soql);
        async move {
            let body = client.get(&url).await.json();
            body["records"].as_array().unwrap().iter().map(|r| r["Id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    // Records created at one instant come in Id order (the order's tie-breaker).
    let mut yesterday = yesterday;
    yesterday.sort();
    assert_eq!(ids("SELECT Id FROM ConvMessageSendRequest WHERE CreatedDate = TODAY").await, today);
    assert_eq!(ids("SELECT Id FROM ConvMessageSendRequest WHERE CreatedDate = YESTERDAY").await, yesterday);
    assert_eq!(ids("SELECT Id FROM ConvMessageSendRequest WHERE CreatedDate < YESTERDAY").await, three_days_ago);
    let recent =
        ids("SELECT Id FROM ConvMessageSendRequest WHERE CreatedDate = LAST_N_DAYS:1 ORDER BY CreatedDate DESC").await;
    assert_eq!(recent, [today[0].clone(), yesterday[1].clone(), yesterday[0].clone()]);
    let exact = ids("SELECT Id FROM ConvMessageSendRequest WHERE CreatedDate >= 2026-01-03T00:00:00Z AND CreatedDate < 2026-01-04T01:00:00+01:00").await;
    assert_eq!(exact, yesterday);
    app.stop().await;
}

#[tokio::test]
async fn a_refused_query_is_a_400_with_salesforce_s_code_and_a_message_naming_the_token_and_position() {
    let app = spawn().await;
    let client = http(&app);
    let refusal = |soql: &str| {
        let client = &client;
        let url = q(soql);
        async move {
            let answer = client.get(&url).await;
            assert_eq!(answer.status, 400, "{}", answer.body);
            let body = answer.json();
            (body[0]["errorCode"].as_str().unwrap().to_owned(), body[0]["message"].as_str().unwrap().to_owned())
        }
    };
    let (code, message) = refusal("SELECT Id FRM ConvMessageSendRequest").await;
    assert_eq!(code, "MALFORMED_QUERY");
    assert_eq!(
        message,
        "SELECT Id FRM ConvMessageSendRequest\n          ^\nERROR at Row:1:Column:11\nunexpected token: 'FRM'"
    );
    let (code, message) = refusal("SELECT Id, Colour FROM ConvMessageSendRequest").await;
    assert_eq!(code, "INVALID_FIELD");
    assert!(
        message.ends_with("ERROR at Row:1:Column:12\nNo such column 'Colour' on entity 'ConvMessageSendRequest'."),
        "{message}"
    );
    let (code, message) = refusal("SELECT Id FROM Account").await;
    assert_eq!((code.as_str(), message.ends_with("sObject type 'Account' is not supported.")), ("INVALID_TYPE", true));
    for (soql, expected) in [
        ("SELECT Id FROM ConvMessageSendRequest GROUP BY Name", "MALFORMED_QUERY"),
        (
            "SELECT Id FROM ConvMessageSendRequest WHERE Id IN (SELECT Id FROM ConvMessageSendRequest)",
            "MALFORMED_QUERY",
        ),
        ("SELECT Id FROM ConvMessageSendRequest FOR UPDATE", "MALFORMED_QUERY"),
        ("SELECT SUM(TotalMessageCount) FROM ConvMessageSendRequest", "MALFORMED_QUERY"),
        ("SELECT Owner.Name FROM ConvMessageSendRequest", "INVALID_FIELD"),
        ("SELECT Id FROM ConvMessageSendRequest WHERE TotalMessageCount = 'two'", "INVALID_FIELD"),
        ("SELECT Id FROM ConvMessageSendRequest WHERE Id = 'nope'", "INVALID_QUERY_FILTER_OPERATOR"),
        ("SELECT Id FROM ConvMessageSendRequest OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE"),
    ] {
        assert_eq!(refusal(soql).await.0, expected, "{soql}");
    }
    for path in [QUERY.to_owned(), format!("{QUERY}?q="), format!("{QUERY}?x=1")] {
        let answer = client.get(&path).await;
        assert_eq!((answer.status, answer.json()[0]["errorCode"].clone()), (400, json!("MALFORMED_QUERY")), "{path}");
    }
    let xml = client.send(client.authed(Method::GET, &q("SELECT")).header("accept", "application/xml")).await;
    assert_eq!(xml.xml().child("Error").child("errorCode").text, "MALFORMED_QUERY");
    let bad_batch = client
        .send(
            client
                .authed(Method::GET, &q("SELECT Id FROM ConvMessageSendRequest"))
                .header("Sforce-Query-Options", "batchSize=many"),
        )
        .await;
    assert_eq!((bad_batch.status, bad_batch.json()[0]["fields"].clone()), (400, json!(["Sforce-Query-Options"])));
    app.stop().await;
}

#[tokio::test]
async fn a_query_locator_of_another_tenant_altered_or_invented_is_invalid_query_locator() {
    let app = spawn().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    send_many(&app, &fx, 201, 8).await;
    let first = client
        .send(
            client
                .authed(Method::GET, &q("SELECT Id FROM ConvMessageSendRequest"))
                .header("Sforce-Query-Options", "batchSize=200"),
        )
        .await
        .json();
    let next = first["nextRecordsUrl"].as_str().unwrap().to_owned();
    let theirs = client.send(client.request(Method::GET, &next).bearer_auth(&app.other_token)).await;
    assert_eq!((theirs.status, theirs.json()[0]["errorCode"].clone()), (400, json!("INVALID_QUERY_LOCATOR")));
    let altered = format!("{}x-200", next.trim_end_matches("-200"));
    for url in [altered, format!("{QUERY}/01gD0000002HU6KIAW-2000"), format!("{QUERY}/nonsense")] {
        let answer = client.get(&url).await;
        assert_eq!(
            (answer.status, answer.json()[0]["errorCode"].clone()),
            (400, json!("INVALID_QUERY_LOCATOR")),
            "{url}"
        );
    }
    let last = client.get(&next).await.json();
    assert_eq!((last["done"].clone(), last["records"].as_array().unwrap().len()), (json!(true), 1));
    app.stop().await;
}

#[tokio::test]
async fn queries_are_scoped_to_the_token_s_tenant_and_need_the_read_scope() {
    let send_only = generate_token();
    let hash = hash_token(&send_only);
    let app = spawn_app_with(|c| {
        c.dispatch.enabled = false;
        c.tenants[0].tokens.push(TokenConfig {
            sha256: hash,
            scopes: vec!["send".into()],
            label: "send only".into(),
            expires_at: None,
        })
    })
    .await;
    let fx = app.provision(1).await;
    let client = http(&app);
    send_many(&app, &fx, 2, 1).await;
    let url = q("SELECT Id FROM ConvMessageSendRequest");
    let read = client.send(client.request(Method::GET, &url).bearer_auth(&app.read_token)).await;
    assert_eq!(read.json()["totalSize"], 2);
    let other = client.send(client.request(Method::GET, &url).bearer_auth(&app.other_token)).await;
    assert_eq!(other.json(), json!({"totalSize": 0, "done": true, "records": []}));
    let denied = client.send(client.request(Method::GET, &url).bearer_auth(&send_only)).await;
    assert_eq!((denied.status, denied.json()[0]["errorCode"].clone()), (403, json!("INSUFFICIENT_ACCESS")));
    let anonymous = client.send(client.request(Method::GET, &url)).await;
    assert_eq!((anonymous.status, anonymous.body.as_str()), (401, INVALID_SESSION));
    let post = client.send(client.authed(Method::POST, &url)).await;
    assert_eq!((post.status, post.header("allow")), (405, "GET, HEAD"));
    app.stop().await;
}

#[tokio::test]
async fn list_fields_counts_and_completion_show_the_delivered_state() {
    let app = spawn().await;
    let fx = app.provision(2).await;
    app.set_consent(&fx.end_user_ids[1], pb::ConsentStatus::OptedOut).await;
    let mut enforced = fx.request();
    enforced.is_enforce_messaging_channel_consent = Some(true);
    let accepted = app.conv().await.send_conversation_messages(enforced).await.unwrap().into_inner();
    deliver_all(&app).await;
    let client = http(&app);
    let body = client
        .get(&q("SELECT Id, RequestStatus, CompletedDate, SuccessMessageCount, FailedMessageCount, FailedMessageIdentifiers, \
                 FailedMessageErrorReasons, FailedMeuPlatformKeys FROM ConvMessageSendRequest WHERE FailedMessageCount > 0"))
        .await
        .json();
    let record = &body["records"][0];
    assert_eq!(record["Id"], json!(accepted.request_id));
    assert_eq!(record["RequestStatus"], "Completed");
    assert_eq!(record["CompletedDate"], "2026-01-01T00:00:00.000+0000");
    assert_eq!((record["SuccessMessageCount"].clone(), record["FailedMessageCount"].clone()), (json!(1), json!(1)));
    assert_eq!(record["FailedMessageIdentifiers"], json!(accepted.message_identifiers[1]));
    assert_eq!(record["FailedMessageErrorReasons"], "EndUserIsNotOptedIn");
    assert!(record["FailedMeuPlatformKeys"].as_str().unwrap().starts_with("+1555"));
    app.stop().await;
}
