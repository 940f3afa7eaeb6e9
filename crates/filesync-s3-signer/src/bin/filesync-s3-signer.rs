//! `filesync-s3-signer`: the signer contract over an S3-compatible bucket. Stateless: run as
//! many as you like behind a load balancer.

use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser};
use filesync_core::server::cli::{ServerArgs, Started, main_with, shutdown_signal, start};
use filesync_core::server::s3::S3Args;
use filesync_core::server::{router_with_relay, serve_with_config};
use filesync_s3_signer::{Error, Result, S3Settings, S3Signer};

#[derive(Parser, Debug)]
#[command(
    name = "filesync-s3-signer",
    version,
    about = "Mints short-lived SigV4 URLs so filesync clients move bytes directly to S3-compatible storage"
)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    s3: S3Args,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Only S3 here: the bucket's endpoint, name and credentials are required.
    let matches = S3Args::require(Args::command()).get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    main_with("filesync-s3-signer", args.server.log_format, run(args)).await
}

async fn run(args: Args) -> Result<()> {
    let signer = S3Signer::new(S3Settings::try_from(args.s3)?)?;
    let mut config = args.server.router_config()?;
    config.version = env!("CARGO_PKG_VERSION");
    let serve_config = args.server.serve_config()?;
    let Started {
        relay,
        listener,
        addr,
    } = start(&args.server.listen, args.server.relay_db.as_deref())
        .await
        .map_err(|e| Error::Start(e.into()))?;
    tracing::info!(%addr, base_path = %config.base_path, relay = relay.is_some(), "filesync-s3-signer listening");
    println!("listening on {addr}");
    serve_with_config(
        listener,
        router_with_relay(Arc::new(signer), config, relay),
        shutdown_signal(),
        serve_config,
    )
    .await
    .map_err(Error::Serve)
}
