#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
mod app;
pub mod auth;
mod body;
pub mod config;
pub mod idempotency;
pub mod images;
pub mod metrics;
pub mod middleware;
pub mod payments;
pub mod problem;
mod product_json;
pub mod ratelimit;
mod reply;
mod serve;

pub use app::{DOCS_PATH, OPENAPI_PATH, build_app, openapi_json};
pub use body::JsonBody;
pub use config::Config;
pub use reply::{EncodedJson, JsonReply};
pub use serve::serve;
