#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "demo")]
pub mod demo;
pub mod domain;
mod error;
mod facade;
#[cfg(feature = "memory")]
pub mod memory;
pub mod ports;
pub mod search;
pub mod services;

pub use error::{Error, FieldError, Result, Validator};
pub use facade::{
    AccountsBackend, Area, BackendHealth, CatalogBackend, CheckoutBackend, Commerce, CommerceBuilder, CommerceConfig,
    Stores,
};
