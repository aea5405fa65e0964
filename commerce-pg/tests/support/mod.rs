//! The shared test support lives in the crate (`commerce_pg::testing`, feature `testing`).

pub use commerce_pg::testing::fresh_store;
