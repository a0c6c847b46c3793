//! The `convmsg` command line: `serve`, `token new`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "convmsg",
    version,
    about = "Send templated conversation messages (Salesforce sendConversationMessages, self-hosted)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: gRPC, health and reflection on one listener.
    Serve(ServeArgs),
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
}
