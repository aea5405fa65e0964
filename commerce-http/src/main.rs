//! `commerce-server`: the reference host. Reads the environment, wires the engine, serves.

use std::process::ExitCode;

use std::sync::Arc;

use commerce_core::Commerce;
use commerce_http::Config;
use commerce_http::config::LogFormat;
use commerce_mongo::MongoStore;
use commerce_pg::{PgConfig, PgStore};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

// A response is built from many small allocations (poem-openapi encodes through
// `serde_json::Value`); mimalloc serves them far cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs go to stdout from a writer thread, so a request never waits on the write of its
/// access-log line; the returned guard flushes what is queued when it drops. The queue is not
/// lossy: when stdout cannot keep up, requests wait rather than lines vanish.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .finish(std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
    guard
}

/// Lines the log queue holds before requests wait for stdout: a quarter of a second of access
/// logs at 60,000 requests a second. The default (128,000) kept 3.9 MiB resident from the start.
const LOG_QUEUE_LINES: usize = 16_384;

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

/// Builds the engine: PostgreSQL for accounts, orders, payments and stock when `DATABASE_URL`
/// is set, MongoDB for the catalog and carts when `MONGO_URI` is set, memory for the rest.
async fn wire(config: &Config) -> Result<Commerce, Box<dyn std::error::Error>> {
    let mut builder = Commerce::builder().config(config.commerce_config()?);
    builder = match &config.s3 {
        Some(s3) => builder.images(Arc::new(commerce_http::images::S3ImageStore::new(s3.clone())?)),
        None => builder.images(Arc::new(commerce_http::images::LocalImageStore::new(
            config.media_dir.clone(),
        ))),
    };
    if let Some(key) = &config.stripe_secret_key {
        let mut stripe = commerce_http::payments::stripe::StripeConfig::new(key.clone());
        if let Some(base) = &config.stripe_api_base {
            stripe.api_base = base.clone();
        }
        builder = builder.payment_gateway(Arc::new(commerce_http::payments::stripe::StripeGateway::new(stripe)?));
    }
    if let Some(url) = &config.database_url {
        let mut pg_config = PgConfig::new(url.clone());
        pg_config.max_connections = config.database_max_connections;
        let pg = Arc::new(PgStore::open(&pg_config).await?);
        builder = builder.accounts(pg.clone()).checkout(pg);
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

/// Loads the demo store unless the catalog already has categories. The superadmin from
/// `ADMIN_EMAIL`/`ADMIN_PASSWORD` owns it, or a demo owner made for the purpose.
async fn seed_demo(commerce: &Commerce, config: &Config, products: usize) -> Result<(), Box<dyn std::error::Error>> {
    if !commerce.catalog().category_tree().await?.is_empty() {
        tracing::info!("catalog is not empty: demo seed skipped");
        return Ok(());
    }
    let (email, password) = config
        .admin
        .clone()
        .unwrap_or_else(|| ("owner@demo.example".to_owned(), "demo-owner-password".to_owned()));
    let owner = commerce.accounts().ensure_superadmin(&email, &password).await?;
    let options = commerce_core::demo::DemoOptions {
        products,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let report =
        commerce_core::demo::seed(commerce, &commerce_core::demo::seeding_principal(owner.id), options).await?;
    tracing::info!(
        products = report.products,
        categories = report.categories,
        skus = report.skus,
        reviews = report.reviews,
        owner = %owner.email,
        seconds = started.elapsed().as_secs_f64(),
        "demo store loaded"
    );
    Ok(())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["serve"] => {}
        ["create-superadmin", email] => return create_superadmin(&config, email).await,
        ["seed"] | ["seed", _] => {
            let _log = init_logging(config.log_format);
            if config.database_url.is_none() && config.mongo_uri.is_none() {
                return Err(
                    "nothing to seed into: set DATABASE_URL and MONGO_URI, or use SEED_DEMO_PRODUCTS with the server"
                        .into(),
                );
            }
            let products = match args.get(1) {
                Some(n) => n
                    .parse()
                    .map_err(|_| format!("seed: {n:?} is not a number of products"))?,
                None => 1_000,
            };
            let commerce = wire(&config).await?;
            return seed_demo(&commerce, &config, products).await;
        }
        _ => return Err("usage: commerce-server [serve | seed [PRODUCTS] | create-superadmin EMAIL]".into()),
    }
    let _log = init_logging(config.log_format);
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
    tracing::info!(gateway = commerce.payments().gateway().name(), "payment gateway");
    if let Some(url) = &config.redis_url {
        commerce_http::ratelimit::check_redis(url)
            .await
            .map_err(|e| format!("REDIS_URL: Redis does not answer: {e}"))?;
        tracing::info!("rate limits shared through Redis");
    }
    if commerce.backends().iter().any(|(_, b)| *b == "memory") {
        tracing::warn!("running on the in-memory adapter: nothing is persisted across restarts");
    }
    if let Some(products) = config.seed_demo_products {
        seed_demo(&commerce, &config, products).await?;
    }
    // Finish or undo checkouts a crash left half-way, expire unpaid orders and drop expired
    // carts: once now, then periodically. Every step is compare-and-set, so several hosts
    // may run it at once.
    let maintenance = commerce.clone();
    let every = config.maintenance_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match maintenance.orders().recover().await {
                // Confirming checkouts that converted their carts is routine; repairs are news.
                Ok(r) if r.resumed + r.compensated + r.completed + r.expired > 0 => {
                    tracing::info!(?r, "checkout recovery")
                }
                Ok(r) => tracing::debug!(?r, "checkout recovery"),
                Err(e) => tracing::warn!(error = %e, "checkout recovery failed; will retry"),
            }
            if let Err(e) = maintenance.carts().purge_expired().await {
                tracing::warn!(error = %e, "expired carts not purged; will retry");
            }
        }
    });
    let app = commerce_http::build_app(&commerce, &config);
    let addr = (config.host, config.port);
    tracing::info!(host = %config.host, port = config.port, docs = commerce_http::DOCS_PATH, "listening");
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", config.host, config.port))?;
    commerce_http::serve(listener, app, shutdown_signal(), config.shutdown_grace).await?;
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
