//! `commerce-server`: the reference host. Reads the environment, wires the engine, serves.

use std::process::ExitCode;

use commerce_core::Commerce;
use commerce_http::Config;
use commerce_http::config::LogFormat;
use poem::Server;
use poem::listener::TcpListener;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, draining"),
        () = term => tracing::info!("SIGTERM received, draining"),
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    init_logging(config.log_format);
    let commerce = Commerce::builder().config(config.commerce_config()?).build()?;
    if config.jwt_secret.is_none() {
        tracing::warn!("JWT_SECRET is not set: using a random secret; sessions end when the process stops");
    }
    if let Some((email, password)) = &config.admin {
        let admin = commerce.accounts().ensure_superadmin(email, password).await?;
        tracing::info!(email = %admin.email, "superadmin ensured from ADMIN_EMAIL");
    }
    for (area, backend) in commerce.backends() {
        tracing::info!(area = area.as_str(), backend, "store wired");
    }
    if commerce.backends().iter().any(|(_, b)| *b == "memory") {
        tracing::warn!("running on the in-memory adapter: nothing is persisted across restarts");
    }
    let app = commerce_http::build_app(&commerce, &config);
    let addr = (config.host, config.port);
    tracing::info!(host = %config.host, port = config.port, docs = commerce_http::DOCS_PATH, "listening");
    Server::new(TcpListener::bind(addr))
        .run_with_graceful_shutdown(app, shutdown_signal(), Some(config.shutdown_grace))
        .await?;
    tracing::info!("stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("commerce-server: {e}");
            ExitCode::FAILURE
        }
    }
}
