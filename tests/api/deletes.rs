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
