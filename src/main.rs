//! `convmsg`: parse the command line, load config, start logging, run.

use clap::Parser;
use convmsg::cli::{Cli, Command, ServeArgs, TokenCommand};
use convmsg::config::{Config, Overrides, TlsOverrides};
use convmsg::domain::principal::{generate_token, hash_token, parse_scopes, scopes_to_string};
use convmsg::server::app::App;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Send(args) => convmsg::cli::client::send(args).await,
        Command::Status(args) => convmsg::cli::client::status(args).await,
        Command::Demo(args) => convmsg::cli::demo::run(args).await,
        Command::Token(TokenCommand::New { tenant, scopes, label }) => {
            let scopes = parse_scopes([scopes.as_str()]).map_err(anyhow::Error::msg)?;
            let token = generate_token();
            println!("token:  {token}");
            println!("sha256: {}", hash_token(&token));
            println!("\n# config lines granting it (the token itself is not stored anywhere):");
            println!("[[tenants]]\nname = {tenant:?}\n[[tenants.tokens]]\nsha256 = {:?}", hash_token(&token));
            let list: Vec<String> = scopes_to_string(&scopes).split(',').map(|s| format!("{s:?}")).collect();
            println!("scopes = [{}]\nlabel = {label:?}", list.join(", "));
            Ok(())
        }
        Command::Token(TokenCommand::List { client }) => convmsg::cli::client::token_list(client).await,
        Command::Token(TokenCommand::Revoke { client, token_or_sha256 }) => {
            convmsg::cli::client::token_revoke(client, &token_or_sha256).await
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        database_url: args.database_url,
        tls: TlsOverrides { cert_path: args.tls_cert, key_path: args.tls_key },
    };
    let config = Config::load(args.config.as_deref(), &overrides)?;
    let telemetry = convmsg::telemetry::init(&config.log, &config.telemetry)?;
    for name in convmsg::config::ignored_environment_variables() {
        tracing::warn!(variable = %name, "this CONVMSG_* variable is not a setting and was ignored");
    }
    let app = App::build_traced(config, telemetry).await?;
    if let Some(token) = app.generated_token() {
        eprintln!(
            "\nconvmsg: no token was configured, so one was generated for tenant \"default\" with every scope.\n\
             It is shown only now (only its SHA-256 is stored):\n\n    {token}\n\n\
             Set CONVMSG_BOOTSTRAP_TOKEN or [[tenants.tokens]] to choose your own.\n"
        );
    }
    let shutdown = CancellationToken::new();
    // Installed before the listener serves, so a SIGTERM that arrives at once still drains.
    tokio::spawn(stop_on_signal(Signals::install()?, shutdown.clone()));
    let result = app.run_until_stopped(shutdown).await;
    convmsg::telemetry::flush();
    result
}

/// SIGTERM and Ctrl-C, registered with the OS when made (not when first awaited).
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C; `App::run_until_stopped` then drains and
/// returns, and `main` exits 0. A pod therefore needs no preStop hook.
#[cfg_attr(not(unix), allow(unused_mut))]
async fn stop_on_signal(mut signals: Signals, shutdown: CancellationToken) {
    #[cfg(unix)]
    tokio::select! {
        _ = signals.terminate.recv() => {}
        _ = signals.interrupt.recv() => {}
    }
    #[cfg(not(unix))]
    {
        let _ = &mut signals;
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}
