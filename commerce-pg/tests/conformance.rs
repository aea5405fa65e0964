//! The shared port conformance suite (`commerce_core::conformance`) against PostgreSQL: one
//! test per contract, each on a fresh database of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

commerce_core::accounts_conformance!(support::fresh_store);
commerce_core::checkout_conformance!(support::fresh_store);
