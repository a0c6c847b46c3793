//! Deleting channels, messaging components and end users through the admin API: refused
//! while something not yet finished needs the record, naming it; history stays readable.

use convmsg::clock::Clock;
use convmsg::grpc::pb;
use tonic::Code;

use crate::control::*;
use crate::fake_provider::*;
use crate::helpers::*;

async fn delete_user(app: &TestApp, token: &str, id: &str) -> Result<(), tonic::Status> {
    let mut admin = app.admin_as(Some(token)).await;
    admin.delete_messaging_end_user(pb::DeleteMessagingEndUserRequest { id: id.into() }).await.map(|_| ())
}

async fn delete_channel(app: &TestApp, token: &str, key: &str) -> Result<(), tonic::Status> {
    let mut admin = app.admin_as(Some(token)).await;
    admin.delete_channel(pb::DeleteChannelRequest { channel: key.into() }).await.map(|_| ())
}

async fn delete_definition(app: &TestApp, key: &str) -> Result<(), tonic::Status> {
    let mut admin = app.admin().await;
    admin
        .delete_message_definition(pb::DeleteMessageDefinitionRequest { message_definition: key.into() })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn an_end_user_with_messages_not_yet_final_is_refused_naming_the_request_then_deleted_once_they_are() {
    let fake = FakeProvider::new(test_clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = fake_fixture(&app, 2).await;
    let id = send(&app, fx.request()).await;
    let user = fx.end_user_ids[0].clone();

    let err = delete_user(&app, &app.token, &user).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(&id), "names the request: {}", err.message());
    assert_eq!(delete_user(&app, &app.other_token, &user).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(delete_user(&app, &app.read_token, &user).await.unwrap_err().code(), Code::PermissionDenied);

    app.dispatcher.run_once().await.unwrap();
    delete_user(&app, &app.token, &user).await.unwrap();
    let err = app
        .admin()
        .await
        .get_messaging_end_user(pb::GetMessagingEndUserRequest { id: user.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(delete_user(&app, &app.token, &user).await.unwrap_err().code(), Code::NotFound);
    // History keeps the id; a new request to the deleted end user is refused naming it.
    let done = record(&app, &id).await;
    assert_eq!(done.messages[0].messaging_end_user_id, user);
    let err = app.conv().await.send_conversation_messages(fx.request()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violations(&err)[0].0, "messagingEndUserIds[0]");
    app.stop().await;
}

#[tokio::test]
async fn a_channel_with_end_users_is_refused_naming_them_and_an_empty_one_is_deleted() {
    let app = spawn_accept_only().await;
    let fx = app.provision(1).await;
    let err = delete_channel(&app, &app.token, &fx.channel.developer_name).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains(&fx.end_user_ids[0]), "{}", err.message());
    assert_eq!(delete_channel(&app, &app.other_token, &fx.channel.id).await.unwrap_err().code(), Code::NotFound);

    delete_user(&app, &app.token, &fx.end_user_ids[0]).await.unwrap();
    delete_channel(&app, &app.token, &fx.channel.id).await.unwrap();
    let err =
        app.admin().await.get_channel(pb::GetChannelRequest { channel: fx.channel.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn a_component_used_by_a_request_not_yet_completed_is_refused_a_scheduled_one_included() {
    let fake = FakeProvider::new(test_clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = fake_fixture(&app, 1).await;
    let later = at(app.clock.now_ms() + HOUR_MS);
    let id = send(&app, pb::SendConversationMessagesRequest { send_at: later, ..fx.request() }).await;
    let err = delete_definition(&app, &fx.definition.api_name).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains(&id), "{}", err.message());

    cancel_as(&app, &app.token, &id).await.unwrap();
    delete_definition(&app, &fx.definition.id).await.unwrap();
    assert_eq!(delete_definition(&app, &fx.definition.id).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(record(&app, &id).await.message_definition, fx.definition.api_name, "history keeps the name");
    let err = app.conv().await.send_conversation_messages(fx.request()).await.unwrap_err();
    assert_eq!(violations(&err)[0].0, "messageDefinitionName");
    app.stop().await;
}

#[tokio::test]
async fn a_message_to_an_end_user_deleted_after_its_accept_fails_instead_of_staying_due() {
    // What a replica whose cache still knew the end user leaves behind.
    let fake = FakeProvider::new(test_clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = fake_fixture(&app, 2).await;
    let id = send(&app, fx.request()).await;
    app.db.execute(&format!("DELETE FROM end_users WHERE id = '{}'", fx.end_user_ids[1])).await;
    app.dispatcher.run_once().await.unwrap();
    let done = record(&app, &id).await;
    assert_eq!(done.request_status, pb::RequestStatus::Completed as i32);
    assert_eq!(reasons(&done), [(3, String::new()), (4, "MessagingEndUserDeleted".to_owned())]);
    assert_eq!(fake.sent().len(), 1);
    app.stop().await;
}

fn declare(config: &mut convmsg::config::Config, channels: &[&str], definitions: &[&str], users: &[(&str, &str)]) {
    use serde_json::{from_value, json};
    config.channels = channels
        .iter()
        .map(|name| from_value(json!({"developer_name": name, "message_type": "Text", "provider": "log"})).unwrap())
        .collect();
    config.definitions =
        definitions.iter().map(|name| from_value(json!({"api_name": name, "text_layout": "hi"})).unwrap()).collect();
    config.end_users = users
        .iter()
        .map(|(channel, key)| {
            from_value(
                json!({"channel": channel, "messaging_platform_key": key, "consent_status": "ExplicitlyOptedIn"}),
            )
            .unwrap()
        })
        .collect();
}

async fn channel_names(app: &TestApp) -> Vec<String> {
    let page = app.admin().await.list_channels(pb::ListChannelsRequest::default()).await.unwrap().into_inner();
    let mut names: Vec<String> = page.channels.into_iter().map(|c| c.developer_name).collect();
    names.sort();
    names
}

#[tokio::test]
async fn with_prune_a_start_deletes_the_declared_records_the_file_dropped_and_nothing_made_through_the_api() {
    let db = TestDatabase::create().await;
    let url = db.url.clone();
    let first = spawn_app_on(
        TestDatabase::at(&url),
        |c| {
            c.dispatch.enabled = false;
            c.provisioning.prune = true;
            declare(c, &["keep", "drop"], &["Kept", "Dropped"], &[("keep", "+1"), ("drop", "+2")]);
        },
        Vec::new(),
    )
    .await;
    let api_made = first.provision(1).await; // a channel, component and end user of the API's
    assert_eq!(channel_names(&first).await.len(), 3);
    first.stop().await;

    let second = spawn_app_on(
        TestDatabase::at(&url),
        |c| {
            c.dispatch.enabled = false;
            c.provisioning.prune = true;
            declare(c, &["keep"], &["Kept"], &[("keep", "+1")]);
        },
        Vec::new(),
    )
    .await;
    let mut names = vec!["keep".to_owned(), api_made.channel.developer_name.clone()];
    names.sort();
    assert_eq!(channel_names(&second).await, names, "the dropped channel went, with its end user");
    let mut admin = second.admin().await;
    let dropped =
        admin.get_message_definition(pb::GetMessageDefinitionRequest { message_definition: "Dropped".into() });
    assert_eq!(dropped.await.unwrap_err().code(), Code::NotFound);
    let api_definition = api_made.definition.api_name.clone();
    admin.get_message_definition(pb::GetMessageDefinitionRequest { message_definition: api_definition }).await.unwrap();
    second.end_user(&api_made.end_user_ids[0]).await;
    second.stop().await;

    // Without prune, a record the file drops stays.
    let third = spawn_app_on(
        TestDatabase::at(&url),
        |c| {
            c.dispatch.enabled = false;
            declare(c, &[], &[], &[]);
        },
        Vec::new(),
    )
    .await;
    assert_eq!(channel_names(&third).await, names);
    third.stop().await;
    drop(db);
}
