//! The `convmsg` command line: `serve`, `send`, `status`, `demo`, `token new|list|revoke`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod client;
pub mod demo;

/// `0.1.0 (1a2b3c4)`: the package version and the git revision it was built from
/// (`build.rs` bakes it in; `unknown` when built outside a git checkout without
/// `CONVMSG_GIT_REVISION`).
pub use crate::server::VERSION;

#[derive(Debug, Parser)]
#[command(
    name = "convmsg",
    version = VERSION,
    about = "Send templated conversation messages (Salesforce sendConversationMessages, self-hosted)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: gRPC, health, reflection and delivery on one listener.
    Serve(ServeArgs),
    /// Send a messaging component to messaging end users.
    Send(SendArgs),
    /// Show a request's record; --watch follows it live until Completed.
    Status(StatusArgs),
    /// The whole job in one command: an embedded server, a demo channel, component and
    /// end users, one request sent and watched to Completed.
    Demo(DemoArgs),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:50051]
    #[arg(long, env = "CONVMSG_LISTEN")]
    pub listen: Option<String>,
    /// sqlite://file.db [default: sqlite://convmsg.db]
    #[arg(long, env = "CONVMSG_DATABASE_URL")]
    pub database_url: Option<String>,
    /// TOML config file (see config/convmsg.example.toml)
    #[arg(long, env = "CONVMSG_CONFIG")]
    pub config: Option<PathBuf>,
    /// PEM certificate chain: serve TLS on the listener (with --tls-key)
    #[arg(long, env = "CONVMSG_TLS__CERT_PATH")]
    pub tls_cert: Option<String>,
    /// PEM private key for --tls-cert
    #[arg(long, env = "CONVMSG_TLS__KEY_PATH")]
    pub tls_key: Option<String>,
}

/// Where the server is and who is calling.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, env = "CONVMSG_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// API token (Bearer).
    #[arg(long, env = "CONVMSG_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Debug, Args)]
#[command(after_help = "PARAMETERS\n  \
    --param NAME=VALUE            text value\n  \
    --param NAME=TYPE:VALUE       typed value; TYPE is text, recordId, date (YYYY-MM-DD),\n                                \
    dateTime (RFC 3339, e.g. 2026-05-01T13:45:00Z), number or boolean\n  \
    --param NAME=TYPEs:V1,V2,...  a list: texts, recordIds, dates, dateTimes, numbers, booleans\n\n\
EXAMPLE\n  \
    convmsg send --definition OrderShipped --to 0PAxx0000000001AAA,0PAxx0000000002AAA \\\n    \
    --param CustomerName=Ada --param ShipDate=date:2026-12-01 --param Total=number:12.5 --watch")]
pub struct SendArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// API name of the messaging component (messageDefinitionName).
    #[arg(long)]
    pub definition: String,
    /// Messaging end user ids, comma-separated or repeated (messagingEndUserIds, at most 100).
    #[arg(long = "to", value_delimiter = ',', required = true)]
    pub to: Vec<String>,
    /// A component parameter; see PARAMETERS below.
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// Check each recipient's consent when sending (isEnforceMessagingChannelConsent).
    #[arg(long)]
    pub enforce_consent: bool,
    /// MessagingEndUser, CommunicationSubscription or Custom (channelConsentType).
    #[arg(long)]
    pub consent_type: Option<String>,
    /// Communication subscription id, with --consent-type CommunicationSubscription.
    #[arg(long)]
    pub subscription: Option<String>,
    /// Any, NonActive or Closed (allowedSessionStatus).
    #[arg(long)]
    pub session: Option<String>,
    /// Idempotency key: a retry with the same key and request records nothing new.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Follow the request until it is Completed.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The request id (15 or 18 characters).
    pub request_id: String,
    /// Follow the request live until it is Completed.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Recipients to create and send to.
    #[arg(long, default_value_t = 5)]
    pub recipients: usize,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random token and the config lines that grant it.
    New {
        /// Tenant the token acts for.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Comma-separated scopes: send, read, admin.
        #[arg(long, default_value = "send,read")]
        scopes: String,
        /// A note stored with the token.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List the tokens of the calling token's tenant: hash, label, scopes, source, expiry,
    /// revocation (needs the admin scope).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token of the calling token's tenant (needs the admin scope). It stops
    /// working at once on the server that answers and within auth.token_reload_interval_ms
    /// on every other replica; the config file cannot grant it again.
    Revoke {
        #[command(flatten)]
        client: ClientArgs,
        /// The token to revoke (cm_…), or its SHA-256 as `convmsg token new` printed it.
        token_or_sha256: String,
    },
}
