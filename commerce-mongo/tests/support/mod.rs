//! The shared test support lives in the crate (`commerce_mongo::testing`, feature `testing`).
#![allow(unused_imports)]

pub use commerce_mongo::testing::*;
