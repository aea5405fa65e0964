//! Domain types: plain data with serde, validated newtypes where a raw value would be wrong.

mod attributes;
mod cart;
mod catalog;
mod idempotency;
mod ids;
mod inventory;
mod money;
mod order;
mod page;
mod payment;
mod review;
mod user;
mod values;

pub use attributes::*;
pub use cart::*;
pub use catalog::*;
pub use idempotency::*;
pub use ids::*;
pub use inventory::*;
pub use money::*;
pub use order::*;
pub use page::*;
pub use payment::*;
pub use review::*;
pub use user::*;
pub use values::*;
