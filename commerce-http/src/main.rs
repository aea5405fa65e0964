//! `commerce-server`: the reference host. Reads the environment, wires the engine, serves.

use std::process::ExitCode;

use std::sync::Arc;

use commerce_core::Commerce;
use commerce_http::Config;
use commerce_http::config::LogFormat;
use commerce_mongo::MongoStore;
use commerce_pg::{PgConfig, PgStore};
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

/// Builds the engine: PostgreSQL for accounts when `DATABASE_URL` is set, MongoDB for the
/// catalog when `MONGO_URI` is set, memory for the rest.
async fn wire(config: &Config) -> Result<Commerce, Box<dyn std::error::Error>> {
    let mut builder = Commerce::builder().config(config.commerce_config()?);
    if let Some(url) = &config.database_url {
        let pg = PgStore::open(&PgConfig::new(url.clone())).await?;
        builder = builder.accounts(Arc::new(pg));
    }
    if let Some(uri) = &config.mongo_uri {
        let mongo = MongoStore::open(uri, &config.mongo_db).await?;
        builder = builder.catalog(Arc::new(mongo));
    }
    Ok(builder.build()?)
}

/// `commerce-server create-superadmin EMAIL`: creates or promotes a superadmin; the password
/// comes from `ADMIN_PASSWORD` or the first line of standard input.
async fn create_superadmin(config: &Config, email: &str) -> Result<(), Box<dyn std::error::Error>> {
    if config.database_url.is_none() {
        return Err("DATABASE_URL is not set: a superadmin in memory would vanish when this command exits".into());
    }
    let password = match std::env::var("ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let commerce = wire(config).await?;
    let user = commerce.accounts().ensure_superadmin(email, &password).await?;
    println!("superadmin {} ({})", user.email, user.id);
    Ok(())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["serve"] => {}
        ["create-superadmin", email] => return create_superadmin(&config, email).await,
        _ => return Err("usage: commerce-server [serve | create-superadmin EMAIL]".into()),
    }
    init_logging(config.log_format);
    let commerce = wire(&config).await?;
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
