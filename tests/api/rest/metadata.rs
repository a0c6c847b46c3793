//! The sObject metadata resources: the global listing, the object's basic information
//! with its recent items, and the describe — JSON and XML, conditional GETs, scopes.

use super::*;

const SOBJECTS: &str = "/services/data/v65.0/sobjects";

#[tokio::test]
async fn the_global_listing_shows_the_object_as_queryable_replicable_and_read_only() {
    let app = spawn_accept_only().await;
    let client = http(&app);
    let answer = client.get(SOBJECTS).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("last-modified"), "Tue, 01 Dec 2026 00:00:00 GMT");
    let body = answer.json();
    assert_eq!((body["encoding"].clone(), body["maxBatchSize"].clone()), (json!("UTF-8"), json!(200)));
    let entry = &body["sobjects"][0];
    assert_eq!(body["sobjects"].as_array().unwrap().len(), 1);
    for (key, value) in [
        ("name", json!("ConvMessageSendRequest")),
        ("keyPrefix", json!("1sr")),
        ("label", json!("Conversation Message Send Request")),
        ("queryable", json!(true)),
        ("replicateable", json!(true)),
        ("retrieveable", json!(true)),
        ("createable", json!(false)),
        ("updateable", json!(false)),
        ("deletable", json!(false)),
    ] {
        assert_eq!(entry[key], value, "{key}");
    }
    assert_eq!(
        entry["urls"],
        json!({"sobject": format!("{SOBJECTS}/ConvMessageSendRequest"), "describe": format!("{SOBJECTS}/ConvMessageSendRequest/describe"),
               "rowTemplate": format!("{SOBJECTS}/ConvMessageSendRequest/{{ID}}")})
    );
    let xml = client.send(client.authed(Method::GET, SOBJECTS).header("accept", "application/xml")).await.xml();
    assert_eq!(
        (xml.name.as_str(), xml.child("sobjects").child("name").text.as_str()),
        ("DescribeGlobal", "ConvMessageSendRequest")
    );
    app.stop().await;
}

#[tokio::test]
async fn the_describe_lists_every_field_with_its_type_filterability_and_picklist_values() {
    let app = spawn_accept_only().await;
    let client = http(&app);
    let answer = client.get(&format!("{RECORD}/describe")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["name"], "ConvMessageSendRequest");
    let fields = body["fields"].as_array().unwrap();
    let names: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, RECORD_FIELDS);
    let field = |name: &str| fields.iter().find(|f| f["name"] == name).unwrap();
    let status = field("RequestStatus");
    assert_eq!((status["type"].clone(), status["label"].clone()), (json!("picklist"), json!("Send Status")));
    let values: Vec<&str> =
        status["picklistValues"].as_array().unwrap().iter().map(|v| v["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["Pending", "InProgress", "Completed"]);
    for (name, kind, length, nillable, filterable, sortable) in [
        ("Id", "id", 18, false, true, true),
        ("Name", "string", 255, false, true, true),
        ("CompletedDate", "datetime", 0, true, true, true),
        ("FailedMessageCount", "int", 0, false, true, true),
        ("ShouldEnforceChannelConsent", "boolean", 0, false, true, true),
        ("FailedMessageIdentifiers", "textarea", 4000, true, false, false),
        ("FailedMessageErrorReasons", "textarea", 700, true, false, false),
    ] {
        let f = field(name);
        assert_eq!(
            (
                f["type"].clone(),
                f["length"].clone(),
                f["nillable"].clone(),
                f["filterable"].clone(),
                f["sortable"].clone()
            ),
            (json!(kind), json!(length), json!(nillable), json!(filterable), json!(sortable)),
            "{name}"
        );
    }
    assert_eq!(field("CommSubscriptionId")["referenceTo"], json!(["CommSubscription"]));
    // Every field the describe calls filterable can be filtered in SOQL, and no other.
    for f in fields {
        let name = f["name"].as_str().unwrap();
        let soql = format!("SELECT Id FROM ConvMessageSendRequest WHERE {name} != null");
        let url =
            format!("/services/data/v65.0/query?q={}", soql.replace(' ', "+").replace('!', "%21").replace('=', "%3D"));
        let answer = client.get(&url).await;
        assert_eq!(answer.status == 200, f["filterable"] == json!(true), "{name}: {}", answer.body);
    }
    let xml =
        client.send(client.authed(Method::GET, &format!("{RECORD}/describe")).header("accept", "text/xml")).await.xml();
    assert_eq!(xml.name, "ConvMessageSendRequest");
    assert_eq!(xml.all("fields").len(), RECORD_FIELDS.len());
    app.stop().await;
}

#[tokio::test]
async fn describe_and_listing_answer_304_when_not_modified_since_and_need_only_a_valid_token() {
    let app = spawn_accept_only().await;
    let client = http(&app);
    for path in [SOBJECTS.to_owned(), format!("{RECORD}/describe")] {
        let fresh = client
            .send(client.authed(Method::GET, &path).header("if-modified-since", "Tue, 01 Dec 2026 00:00:00 GMT"))
            .await;
        assert_eq!((fresh.status, fresh.body.as_str()), (304, ""), "{path}");
        let stale = client
            .send(client.authed(Method::GET, &path).header("if-modified-since", "Mon, 30 Nov 2026 23:59:59 GMT"))
            .await;
        assert_eq!(stale.status, 200, "{path}");
        let head = client.send(client.authed(Method::HEAD, &path)).await;
        assert_eq!((head.status, head.body.as_str()), (200, ""));
        assert_eq!(head.header("content-length"), stale.header("content-length"));
        let read_only = client.send(client.request(Method::GET, &path).bearer_auth(&app.read_token)).await;
        assert_eq!(read_only.status, 200);
        let anonymous = client.send(client.request(Method::GET, &path)).await;
        assert_eq!(anonymous.status, 401);
    }
    app.stop().await;
}

#[tokio::test]
async fn the_basic_information_lists_the_most_recently_modified_requests_of_the_caller() {
    let app = spawn_accept_only().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let (older, _) = client.accept(input(&fx)).await;
    app.clock.advance_ms(1000);
    let (newer, _) = client.accept(input(&fx)).await;
    let theirs = app.provision_as(&app.other_token.clone(), 1).await;
    app.conv_as(Some(&app.other_token)).await.send_conversation_messages(theirs.request()).await.unwrap();
    let answer = client.get(RECORD).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("last-modified"), "Tue, 01 Dec 2026 00:00:00 GMT");
    let body = answer.json();
    assert_eq!(body["objectDescribe"]["name"], "ConvMessageSendRequest");
    assert_eq!(
        body["recentItems"],
        json!([
            {"attributes": {"type": "ConvMessageSendRequest", "url": format!("{RECORD}/{newer}")}, "Id": newer, "Name": "MSJ-00000002"},
            {"attributes": {"type": "ConvMessageSendRequest", "url": format!("{RECORD}/{older}")}, "Id": older, "Name": "MSJ-00000001"},
        ])
    );
    let denied = client.send(client.request(Method::GET, RECORD).bearer_auth(&app.other_token)).await.json();
    assert_eq!(denied["recentItems"].as_array().unwrap().len(), 1, "the other tenant sees only its own");
    let fresh = client
        .send(client.authed(Method::GET, RECORD).header("if-modified-since", "Tue, 01 Dec 2026 00:00:00 GMT"))
        .await;
    assert_eq!(fresh.status, 304);
    // A request modified after the describe's date moves Last-Modified on.
    app.clock.advance_ms(365 * 86_400_000);
    client.accept(input(&fx)).await;
    let moved = client
        .send(client.authed(Method::GET, RECORD).header("if-modified-since", "Tue, 01 Dec 2026 00:00:00 GMT"))
        .await;
    assert_eq!((moved.status, moved.header("last-modified")), (200, "Fri, 01 Jan 2027 00:00:01 GMT"));
    app.stop().await;
}
