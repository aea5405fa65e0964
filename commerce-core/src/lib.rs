#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod domain;
mod error;
pub mod ports;
pub mod search;

pub use error::{Error, FieldError, Result, Validator};
