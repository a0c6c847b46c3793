//! The command-line client: `convmsg send`, `convmsg status` and `convmsg token
//! list|revoke`, over gRPC like any other caller, with a live progress bar for `--watch`.

use std::io::{IsTerminal, Write};

use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::cli::{ClientArgs, SendArgs, StatusArgs};
use crate::domain::params::parse_datetime;
use crate::grpc::pb;
use crate::grpc::pb::conversation_messages_client::ConversationMessagesClient;
use crate::grpc::pb::message_definition_input_parameter::Value;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Client = ConversationMessagesClient<InterceptedService<Channel, Bearer>>;

pub async fn connect(args: &ClientArgs) -> anyhow::Result<(Channel, Bearer)> {
    let url = if args.server.contains("://") { args.server.clone() } else { format!("http://{}", args.server) };
    let channel = Channel::from_shared(url.clone())
        .with_context(|| format!("--server {url:?} is not a URL"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach convmsg at {url}"))?;
    let bearer = MetadataValue::try_from(format!("Bearer {}", args.token))
        .context("--token has characters a header cannot carry")?;
    Ok((channel, Bearer(bearer)))
}

/// Parses `NAME=VALUE`, `NAME=TYPE:VALUE` or `NAME=TYPEs:V1,V2` (see `convmsg send --help`).
pub fn parse_param(spec: &str) -> anyhow::Result<pb::MessageDefinitionInputParameter> {
    let (name, rest) = spec.split_once('=').ok_or_else(|| anyhow!("--param {spec:?}: expected NAME=VALUE"))?;
    let typed = rest.split_once(':').filter(|(t, _)| TYPES.contains(t));
    let (kind, raw) = typed.unwrap_or(("text", rest));
    let list = |raw: &str| raw.split(',').map(str::trim).map(str::to_owned).collect::<Vec<_>>();
    let what = |e: String| anyhow!("--param {name}: {e}");
    let number = |s: &str| s.trim().parse::<f64>().map_err(|_| what(format!("{s:?} is not a number")));
    let boolean = |s: &str| s.trim().parse::<bool>().map_err(|_| what(format!("{s:?} is not true or false")));
    let stamp = |s: &str| {
        parse_datetime(s.trim())
            .map(|t| prost_types::Timestamp { seconds: t.unix_timestamp(), nanos: t.nanosecond() as i32 })
            .ok_or_else(|| what(format!("{s:?} is not an RFC 3339 date-time")))
    };
    let value = match kind {
        "text" => Value::TextValue(raw.to_owned()),
        "recordId" => Value::RecordIdValue(raw.to_owned()),
        "date" => Value::DateValue(raw.to_owned()),
        "dateTime" => Value::DateTimeValue(stamp(raw)?),
        "number" => Value::NumberValue(number(raw)?),
        "boolean" => Value::BooleanValue(boolean(raw)?),
        "texts" => Value::TextValues(pb::TextValues { values: list(raw) }),
        "recordIds" => Value::RecordIdValues(pb::RecordIdValues { values: list(raw) }),
        "dates" => Value::DateValues(pb::DateValues { values: list(raw) }),
        "dateTimes" => Value::DateTimeValues(pb::DateTimeValues {
            values: raw.split(',').map(stamp).collect::<anyhow::Result<_>>()?,
        }),
        "numbers" => {
            Value::NumberValues(pb::NumberValues { values: raw.split(',').map(number).collect::<anyhow::Result<_>>()? })
        }
        "booleans" => Value::BooleanValues(pb::BooleanValues {
            values: raw.split(',').map(boolean).collect::<anyhow::Result<_>>()?,
        }),
        other => bail!("--param {name}: unknown type {other:?}"),
    };
    Ok(pb::MessageDefinitionInputParameter { name: name.trim().to_owned(), value: Some(value) })
}

const TYPES: &[&str] = &[
    "text",
    "recordId",
    "date",
    "dateTime",
    "number",
    "boolean",
    "texts",
    "recordIds",
    "dates",
    "dateTimes",
    "numbers",
    "booleans",
];

fn enum_arg<E>(flag: &str, value: &Option<String>, options: &[(&str, E)]) -> anyhow::Result<i32>
where
    E: Copy + Into<i32>,
{
    let Some(value) = value else { return Ok(0) };
    options.iter().find(|(name, _)| name.eq_ignore_ascii_case(value)).map(|(_, v)| (*v).into()).ok_or_else(|| {
        anyhow!("{flag} {value:?}: expected one of {}", options.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))
    })
}

pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    use pb::{AllowedSessionStatus as S, ChannelConsentType as C};
    let request = pb::SendConversationMessagesRequest {
        message_definition_name: args.definition.clone(),
        messaging_definition_input_parameters: args
            .params
            .iter()
            .map(|p| parse_param(p))
            .collect::<anyhow::Result<_>>()?,
        request_type: pb::RequestType::SendNotificationMessages as i32,
        is_enforce_messaging_channel_consent: Some(args.enforce_consent),
        channel_consent_type: enum_arg(
            "--consent-type",
            &args.consent_type,
            &[
                ("MessagingEndUser", C::MessagingEndUser),
                ("CommunicationSubscription", C::CommunicationSubscription),
                ("Custom", C::Custom),
            ],
        )?,
        communication_subscription_id: args.subscription.clone().unwrap_or_default(),
        allowed_session_status: enum_arg(
            "--session",
            &args.session,
            &[("Any", S::Any), ("NonActive", S::NonActive), ("Closed", S::Closed)],
        )?,
        messaging_end_user_ids: args.to.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
        idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
        priority: pb::Priority::Unspecified as i32,
        send_at: None,
    };
    let (channel, bearer) = connect(&args.client).await?;
    let mut client = ConversationMessagesClient::with_interceptor(channel, bearer);
    let reply = client.send_conversation_messages(request).await.map_err(explain)?.into_inner();
    println!("requestId           {}", reply.request_id);
    println!("messageIdentifiers  {}", reply.message_identifiers.join(","));
    if args.watch {
        let record = watch(&mut client, &reply.request_id).await?;
        print_record(&record);
    }
    Ok(())
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let (channel, bearer) = connect(&args.client).await?;
    let mut client = ConversationMessagesClient::with_interceptor(channel, bearer);
    let record = if args.watch {
        watch(&mut client, &args.request_id).await?
    } else {
        client
            .get_request_status(pb::GetRequestStatusRequest { request_id: args.request_id.clone() })
            .await
            .map_err(explain)?
            .into_inner()
            .request
            .ok_or_else(|| anyhow!("the server sent no record"))?
    };
    print_record(&record);
    Ok(())
}

/// Follows a request to Completed, drawing a progress bar on a terminal.
pub async fn watch<S>(
    client: &mut ConversationMessagesClient<S>,
    request_id: &str,
) -> anyhow::Result<pb::ConvMessageSendRequest>
where
    S: tonic::client::GrpcService<tonic::body::Body>,
    S::Error: Into<tonic::codegen::StdError>,
    S::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <S::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut stream = client
        .watch_request_status(pb::WatchRequestStatusRequest {
            request_id: request_id.to_owned(),
            follow_receipts: false,
        })
        .await
        .map_err(explain)?
        .into_inner();
    let tty = std::io::stderr().is_terminal();
    let mut last = None;
    while let Some(update) = stream.next().await {
        let record = update.map_err(explain)?.request.ok_or_else(|| anyhow!("the server sent no record"))?;
        let line = progress_line(&record);
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
        last = Some(record);
    }
    if tty {
        eprintln!();
    }
    last.ok_or_else(|| anyhow!("the stream ended before any update"))
}

/// `[██████░░░░] 6/10 done · 5 sent · 1 failed · 3 pending · 1 in progress · InProgress`
pub fn progress_line(r: &pb::ConvMessageSendRequest) -> String {
    const WIDTH: u32 = 24;
    let done = r.success_message_count + r.failed_message_count;
    let filled = (done * WIDTH).checked_div(r.total_message_count).unwrap_or(WIDTH).min(WIDTH);
    format!(
        "[{}{}] {done}/{} done · {} sent · {} failed · {} pending · {} in progress · {}",
        "█".repeat(filled as usize),
        "░".repeat((WIDTH - filled) as usize),
        r.total_message_count,
        r.success_message_count,
        r.failed_message_count,
        r.pending_message_count,
        r.in_progress_message_count,
        status_name(r.request_status),
    )
}

fn status_name(s: i32) -> &'static str {
    match pb::RequestStatus::try_from(s) {
        Ok(pb::RequestStatus::Pending) => "Pending",
        Ok(pb::RequestStatus::InProgress) => "InProgress",
        Ok(pb::RequestStatus::Completed) => "Completed",
        _ => "Unknown",
    }
}

fn state_name(s: i32) -> &'static str {
    match pb::MessageState::try_from(s) {
        Ok(pb::MessageState::Pending) => "Pending",
        Ok(pb::MessageState::InProgress) => "InProgress",
        Ok(pb::MessageState::Success) => "Success",
        Ok(pb::MessageState::Failed) => "Failed",
        _ => "Unknown",
    }
}

fn time(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
                .ok()
        })
        .map(crate::domain::params::format_datetime)
        .unwrap_or_else(|| "-".into())
}

pub fn print_record(r: &pb::ConvMessageSendRequest) {
    println!("{}  {}  {}", r.id, r.name, status_name(r.request_status));
    println!("  MessageDefinition  {}", r.message_definition);
    println!("  CreatedDate        {}", time(&r.created_date));
    println!("  CompletedDate      {}", time(&r.completed_date));
    println!(
        "  Messages           {} total · {} sent · {} failed · {} pending · {} in progress",
        r.total_message_count,
        r.success_message_count,
        r.failed_message_count,
        r.pending_message_count,
        r.in_progress_message_count
    );
    println!(
        "  {:<36}  {:<18}  {:<16}  {:<10}  {:>8}  reason",
        "identifier", "end user", "platform key", "status", "attempts"
    );
    for m in &r.messages {
        let why = if !m.reason.is_empty() { m.reason.as_str() } else { m.waiting_reason.as_str() };
        println!(
            "  {:<36}  {:<18}  {:<16}  {:<10}  {:>8}  {}",
            m.message_identifier,
            m.messaging_end_user_id,
            m.platform_key,
            state_name(m.status),
            m.attempts,
            why
        );
    }
}

/// A gRPC error as a person should read it: the message and each field violation.
pub fn explain(status: Status) -> anyhow::Error {
    use tonic_types::StatusExt;
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(br) = status.get_error_details().bad_request() {
        for v in &br.field_violations {
            text.push_str(&format!("\n  {}: {}", v.field, v.description));
        }
    }
    anyhow!(text)
}

type AdminClient = pb::messaging_admin_client::MessagingAdminClient<InterceptedService<Channel, Bearer>>;

async fn admin_client(args: &ClientArgs) -> anyhow::Result<AdminClient> {
    let (channel, bearer) = connect(args).await?;
    Ok(pb::messaging_admin_client::MessagingAdminClient::with_interceptor(channel, bearer))
}

fn show_time(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .map(crate::domain::params::format_datetime)
        .unwrap_or_else(|| "-".into())
}

fn show_token(t: &pb::Token) -> String {
    let source = pb::TokenSource::try_from(t.source).map_or("?", |s| match s {
        pb::TokenSource::Config => "config",
        pb::TokenSource::Bootstrap => "bootstrap",
        pb::TokenSource::Generated => "generated",
        pb::TokenSource::Unspecified => "?",
    });
    format!(
        "{}  {:<9}  {:<15}  expires {}  revoked {}  {}",
        t.sha256,
        source,
        t.scopes.join(","),
        show_time(&t.expiration_date),
        show_time(&t.revoked_date),
        t.label
    )
}

/// `convmsg token list`: one line per token of the caller's tenant.
pub async fn token_list(args: ClientArgs) -> anyhow::Result<()> {
    let tokens = admin_client(&args)
        .await?
        .list_tokens(pb::ListTokensRequest {})
        .await
        .map_err(|s| anyhow!("listing tokens failed: {}", s.message()))?
        .into_inner()
        .tokens;
    for t in &tokens {
        println!("{}", show_token(t));
    }
    Ok(())
}

/// `convmsg token revoke TOKEN|SHA256`: a token (`cm_…`) is hashed here, so it never
/// travels to the server.
pub async fn token_revoke(args: ClientArgs, token_or_sha256: &str) -> anyhow::Result<()> {
    let given = token_or_sha256.trim();
    let sha256 = if given.starts_with("cm_") { crate::domain::principal::hash_token(given) } else { given.to_owned() };
    let revoked = admin_client(&args)
        .await?
        .revoke_token(pb::RevokeTokenRequest { sha256 })
        .await
        .map_err(|s| anyhow!("revoking the token failed: {}", s.message()))?
        .into_inner()
        .token
        .ok_or_else(|| anyhow!("the server answered without the token"))?;
    println!("revoked: {}", show_token(&revoked));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_as_text_by_default_and_typed_with_a_prefix() {
        assert_eq!(parse_param("Name=Ada: Lovelace").unwrap().value, Some(Value::TextValue("Ada: Lovelace".into())));
        assert_eq!(parse_param("N=number:12.5").unwrap().value, Some(Value::NumberValue(12.5)));
        assert_eq!(parse_param("D=date:2026-01-02").unwrap().value, Some(Value::DateValue("2026-01-02".into())));
        assert_eq!(parse_param("B=boolean:true").unwrap().value, Some(Value::BooleanValue(true)));
        assert_eq!(
            parse_param("T=texts:a, b").unwrap().value,
            Some(Value::TextValues(pb::TextValues { values: vec!["a".into(), "b".into()] }))
        );
        let Some(Value::DateTimeValue(t)) = parse_param("At=dateTime:2026-05-01T13:45:00Z").unwrap().value else {
            panic!()
        };
        assert_eq!(t.seconds, 1_777_643_100);
    }

    #[test]
    fn bad_params_name_the_parameter() {
        assert!(parse_param("novalue").unwrap_err().to_string().contains("NAME=VALUE"));
        assert!(parse_param("N=number:twelve").unwrap_err().to_string().contains("--param N"));
    }
}
