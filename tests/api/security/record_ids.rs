//! 16.8 — record ids are one namespace, so through the API an id may only address a
//! record of the caller's own tenant: a new record's id is always generated, and an id
//! that is another tenant's is refused exactly like one nobody uses — nothing is
//! revealed, nothing can be claimed. Fixed ids are the operator's, in the config file,
//! and always win.

use convmsg::domain::principal::generate_token;
use convmsg::grpc::pb;
use tonic::Code;

use crate::helpers::*;

/// A well-formed end-user id no record has (18 characters with its checksum).
fn unused_end_user_id() -> String {
    convmsg::domain::RecordId::generate(convmsg::domain::IdKind::MessagingEndUser).into_string()
}

async fn upsert_end_user_with_id(
    app: &TestApp,
    token: &str,
    channel_id: &str,
    id: &str,
) -> Result<Vec<pb::MessagingEndUser>, tonic::Status> {
    let user = pb::MessagingEndUser {
        id: id.into(),
        messaging_channel_id: channel_id.into(),
        messaging_platform_key: format!("+1555{}", &id[10..15]),
        name: "Mallory".into(),
        ..Default::default()
    };
    app.admin_as(Some(token))
        .await
        .upsert_messaging_end_users(pb::UpsertMessagingEndUsersRequest { messaging_end_users: vec![user] })
        .await
        .map(|r| r.into_inner().messaging_end_users)
}

#[tokio::test]
async fn another_tenants_end_user_id_is_refused_exactly_like_an_unused_one() {
    let app = spawn_accept_only().await;
    let theirs = app.provision(1).await;
    let mine = app.provision_as(&app.other_token, 1).await;

    let taken =
        upsert_end_user_with_id(&app, &app.other_token, &mine.channel.id, &theirs.end_user_ids[0]).await.unwrap_err();
    let unused = unused_end_user_id();
    let free = upsert_end_user_with_id(&app, &app.other_token, &mine.channel.id, &unused).await.unwrap_err();

    assert_eq!((taken.code(), free.code()), (Code::InvalidArgument, Code::InvalidArgument));
    assert_eq!((error_code(&taken), error_code(&free)), ("INVALID_ID_FIELD".into(), "INVALID_ID_FIELD".into()));
    let (taken, free) = (violations(&taken), violations(&free));
    assert_eq!(taken[0].0, "messaging_end_users[0].id");
    assert_eq!(taken[0].1.replace(&theirs.end_user_ids[0], "ID"), free[0].1.replace(&unused, "ID"));
    assert_eq!(app.end_user(&theirs.end_user_ids[0]).await.name, "User 0", "their record is untouched");
}

#[tokio::test]
async fn another_tenants_channel_id_is_refused_exactly_like_an_unused_one() {
    let app = spawn_accept_only().await;
    let theirs = app.provision(1).await;
    let channel = |id: &str| pb::Channel {
        id: id.into(),
        developer_name: "mine".into(),
        message_type: pb::MessageType::Text as i32,
        is_active: true,
        ..Default::default()
    };
    let mut admin = app.admin_as(Some(&app.other_token)).await;
    let unused = convmsg::domain::RecordId::generate(convmsg::domain::IdKind::MessagingChannel).into_string();

    let taken = admin.upsert_channel(pb::UpsertChannelRequest { channel: Some(channel(&theirs.channel.id)) }).await;
    let free = admin.upsert_channel(pb::UpsertChannelRequest { channel: Some(channel(&unused)) }).await;

    let (taken, free) = (taken.unwrap_err(), free.unwrap_err());
    assert_eq!(error_code(&taken), error_code(&free));
    let (taken, free) = (violations(&taken), violations(&free));
    assert_eq!(taken[0].0, "channel.id");
    assert_eq!(taken[0].1.replace(&theirs.channel.id, "ID"), free[0].1.replace(&unused, "ID"));
}

#[tokio::test]
async fn a_tenant_updates_its_own_records_by_id() {
    let app = spawn_accept_only().await;
    let fx = app.provision(1).await;
    let id = &fx.end_user_ids[0];
    let renamed = pb::MessagingEndUser { name: "Ada".into(), ..app.end_user(id).await };

    app.admin()
        .await
        .upsert_messaging_end_users(pb::UpsertMessagingEndUsersRequest { messaging_end_users: vec![renamed] })
        .await
        .expect("an update of its own record by id");

    assert_eq!(app.end_user(id).await.name, "Ada");
}

#[tokio::test]
async fn an_id_the_operator_declares_later_cannot_be_claimed_first_and_the_restart_succeeds() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (operator, acme) = (generate_token(), generate_token());
    let declared = unused_end_user_id();
    let write = |end_users: &str| {
        let path = dir.path().join("convmsg.toml");
        let config = format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\nbootstrap_token = \"{operator}\"\n\
             [[tenants]]\nname = \"acme\"\n[[tenants.tokens]]\nsha256 = \"{}\"\nscopes = [\"admin\", \"read\"]\n\
             [[channels]]\ndeveloper_name = \"sms\"\nmessage_type = \"Text\"\n\
             [[channels]]\ntenant = \"acme\"\ndeveloper_name = \"sms\"\nmessage_type = \"Text\"\n{end_users}",
            db.url,
            convmsg::domain::principal::hash_token(&acme)
        );
        std::fs::write(&path, config).unwrap();
        path
    };
    let mut server = start_server_process(&write(""), None).await;
    let acme_channel = server
        .admin(&acme)
        .await
        .get_channel(pb::GetChannelRequest { channel: "sms".into() })
        .await
        .unwrap()
        .into_inner()
        .channel
        .unwrap();
    let claim = pb::MessagingEndUser {
        id: declared.clone(),
        messaging_channel_id: acme_channel.id,
        messaging_platform_key: "+15550001".into(),
        ..Default::default()
    };
    let claimed = server
        .admin(&acme)
        .await
        .upsert_messaging_end_users(pb::UpsertMessagingEndUsersRequest { messaging_end_users: vec![claim] })
        .await;
    assert!(claimed.is_err(), "acme chose an id: {claimed:?}");
    server.child.kill().await.unwrap();

    let declaring = write(&format!(
        "[[end_users]]\nid = \"{declared}\"\nchannel = \"sms\"\nmessaging_platform_key = \"+15550002\"\n"
    ));
    let server = start_server_process(&declaring, None).await;

    assert_eq!(server.end_user_ids(&operator).await, [declared]);
}
