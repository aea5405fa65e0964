//! The shared catalog conformance suite (`commerce_core::conformance::catalog`), run against
//! MongoDB: one test per port contract, each on a database of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

commerce_core::catalog_conformance!(support::fresh_store);
