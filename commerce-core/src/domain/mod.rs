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
/// Short texts held inline (variant names, options, specifications, SKUs): see [`Attributes`].
pub use compact_str::CompactString;
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
