//! Carts, with optimistic concurrency on `version`.
//!
//! "One active cart per owner" rests on a unique sparse index over `activeOwner`, a field
//! that holds the owner's key only while the cart is active (it is absent otherwise, so any
//! number of converted or merged carts coexist). A cart that expired but was not yet removed
//! by the TTL monitor gives up its claim when a new cart needs it. A converted cart that is
//! reactivated while the owner already has another active cart stays active without the
//! claim, as the other adapters allow; the most recently changed active cart is the owner's.

use async_trait::async_trait;
use bson::{Document, doc};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use commerce_core::domain::{Cart, CartId, CartItem, CartOwner, CartStatus, OrderId, Quantity, Sku};
use commerce_core::ports::CartStore;
use commerce_core::{Error, Result};

use crate::convert::{self, Reader};
use crate::error::{OrStorage, duplicate_key_index};
use crate::{CARTS, MongoError, MongoStore};

/// How often a write retries after losing a race it can recover from.
const ATTEMPTS: usize = 5;

/// A cart as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CartDoc {
    #[serde(rename = "_id")]
    id: String,
    owner: OwnerDoc,
    /// `user:<id>` or `guest:<token hash>`.
    owner_key: String,
    /// `ownerKey` while the cart is active and holds the owner's one active slot; absent
    /// otherwise (the unique index is sparse, so it must be absent, not null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    active_owner: Option<String>,
    items: Vec<CartItemDoc>,
    /// `active`, `converted` or `merged`.
    status: String,
    /// The order a converted cart became.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
    version: i64,
    created_at: bson::DateTime,
    updated_at: bson::DateTime,
    expires_at: bson::DateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OwnerDoc {
    /// `user` or `guest`.
    kind: String,
    id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CartItemDoc {
    id: String,
    sku: String,
    quantity: i64,
    added_at: bson::DateTime,
}

fn owner_doc(owner: &CartOwner) -> OwnerDoc {
    match owner {
        CartOwner::User(id) => OwnerDoc {
            kind: "user".to_owned(),
            id: convert::id(id),
        },
        CartOwner::Guest(hash) => OwnerDoc {
            kind: "guest".to_owned(),
            id: hash.clone(),
        },
    }
}

fn owner_key(owner: &CartOwner) -> String {
    let o = owner_doc(owner);
    format!("{}:{}", o.kind, o.id)
}

/// The filter matching carts in `status`.
fn status_filter(status: CartStatus) -> Document {
    match status {
        CartStatus::Active => doc! { "status": "active" },
        CartStatus::Merged => doc! { "status": "merged" },
        CartStatus::Converted(order) => doc! { "status": "converted", "orderId": convert::id(order) },
    }
}

impl CartDoc {
    /// The stored form; `claim` sets `activeOwner` when the cart is active.
    fn new(c: &Cart, claim: bool) -> Self {
        let key = owner_key(&c.owner);
        let (status, order_id) = match c.status {
            CartStatus::Active => ("active", None),
            CartStatus::Converted(order) => ("converted", Some(convert::id(order))),
            CartStatus::Merged => ("merged", None),
        };
        Self {
            id: convert::id(c.id),
            owner: owner_doc(&c.owner),
            active_owner: (claim && c.status == CartStatus::Active).then(|| key.clone()),
            owner_key: key,
            items: c
                .items
                .iter()
                .map(|i| CartItemDoc {
                    id: convert::id(i.id),
                    sku: i.sku.as_str().to_owned(),
                    quantity: i64::from(i.quantity.get()),
                    added_at: convert::date(i.added_at),
                })
                .collect(),
            status: status.to_owned(),
            order_id,
            version: convert::count(c.version),
            created_at: convert::date(c.created_at),
            updated_at: convert::date(c.updated_at),
            expires_at: convert::date(c.expires_at),
        }
    }

    fn into_cart(self) -> Result<Cart, MongoError> {
        let r = Reader {
            collection: CARTS,
            id: &self.id,
        };
        let owner = match self.owner.kind.as_str() {
            "user" => CartOwner::User(r.id("owner.id", &self.owner.id)?),
            "guest" => CartOwner::Guest(self.owner.id),
            other => return Err(r.corrupt(format!("unknown owner kind {other:?}"))),
        };
        let status = match (self.status.as_str(), self.order_id.as_deref()) {
            ("active", _) => CartStatus::Active,
            ("merged", _) => CartStatus::Merged,
            ("converted", Some(order)) => CartStatus::Converted(r.id("orderId", order)?),
            (other, _) => return Err(r.corrupt(format!("unknown status {other:?} or missing orderId"))),
        };
        let items = self
            .items
            .into_iter()
            .map(|i| {
                Ok(CartItem {
                    id: r.id("items.id", &i.id)?,
                    sku: r.parse("items.sku", Sku::parse(&i.sku))?,
                    quantity: r.parse("items.quantity", Quantity::new(i.quantity))?,
                    added_at: convert::time(i.added_at),
                })
            })
            .collect::<Result<Vec<_>, MongoError>>()?;
        Ok(Cart {
            id: r.id("_id", &self.id)?,
            owner,
            items,
            status,
            version: r.u64("version", self.version)?,
            created_at: convert::time(self.created_at),
            updated_at: convert::time(self.updated_at),
            expires_at: convert::time(self.expires_at),
        })
    }
}

fn cart_exists() -> Error {
    Error::conflict("cart_exists", "the owner already has an active cart")
}

fn cart_changed() -> Error {
    Error::conflict("cart_changed", "the cart was changed by another request")
}

impl MongoStore {
    async fn find_cart(&self, filter: Document) -> Result<Option<Cart>> {
        let found = self
            .carts
            .find_one(filter)
            .sort(doc! { "updatedAt": -1, "_id": -1 })
            .await
            .or_storage()?;
        found.map(|d| d.into_cart().or_storage()).transpose()
    }

    /// `NotFound` when the cart is gone, else `cart_changed`: what a conditional write that
    /// matched nothing means.
    async fn cart_write_missed(&self, id: CartId) -> Error {
        match self.carts.count_documents(doc! { "_id": convert::id(id) }).await {
            Ok(0) => Error::NotFound { entity: "cart" },
            Ok(_) => cart_changed(),
            Err(e) => MongoError::from(e).into(),
        }
    }

    /// Replaces the cart if its stored version is `expected`; `false` when it is not (or the
    /// cart is gone). An active cart claims the owner's slot, or goes without it when another
    /// active cart of the owner holds it.
    async fn replace_cart(&self, cart: &Cart, expected: u64) -> Result<bool> {
        let filter = doc! { "_id": convert::id(cart.id), "version": convert::count(expected) };
        let mut claim = true;
        loop {
            match self.carts.replace_one(filter.clone(), CartDoc::new(cart, claim)).await {
                Ok(r) => return Ok(r.matched_count > 0),
                Err(e) if claim && duplicate_key_index(&e).is_some() => claim = false,
                Err(e) => return Err(MongoError::from(e).into()),
            }
        }
    }
}

#[async_trait]
impl CartStore for MongoStore {
    async fn find_active_cart(&self, owner: &CartOwner, now: DateTime<Utc>) -> Result<Option<Cart>> {
        self.find_cart(doc! {
            "ownerKey": owner_key(owner),
            "status": "active",
            "expiresAt": { "$gt": convert::date(now) },
        })
        .await
    }

    async fn get_cart(&self, id: CartId) -> Result<Cart> {
        self.find_cart(doc! { "_id": convert::id(id) })
            .await?
            .ok_or(Error::NotFound { entity: "cart" })
    }

    /// An expired cart is absent, as for `find_active_cart`; the new cart's creation time is
    /// the clock.
    async fn insert_cart(&self, cart: &Cart) -> Result<()> {
        let active = cart.status == CartStatus::Active;
        if active && self.find_active_cart(&cart.owner, cart.created_at).await?.is_some() {
            return Err(cart_exists());
        }
        let key = owner_key(&cart.owner);
        for _ in 0..ATTEMPTS {
            let Err(error) = self.carts.insert_one(CartDoc::new(cart, true)).await else {
                return Ok(());
            };
            match duplicate_key_index(&error) {
                None => return Err(MongoError::from(error).into()),
                Some(index) if index == "_id_" || !active => {
                    return Err(Error::conflict("cart_exists", "a cart with this id exists"));
                }
                Some(_) => {}
            }
            // The owner's slot is held: by a live cart (refuse), or by one that has expired but
            // is not swept yet (free the slot and try again).
            let freed = self
                .carts
                .update_one(
                    doc! { "activeOwner": &key, "expiresAt": { "$lte": convert::date(cart.created_at) } },
                    doc! { "$unset": { "activeOwner": "" } },
                )
                .await
                .or_storage()?;
            if freed.matched_count == 0 {
                let held = self
                    .carts
                    .count_documents(doc! { "activeOwner": &key })
                    .await
                    .or_storage()?;
                if held > 0 {
                    return Err(cart_exists());
                }
            }
        }
        Err(cart_exists())
    }

    async fn save_cart(&self, cart: &Cart) -> Result<()> {
        let saved = match cart.version.checked_sub(1) {
            Some(expected) => self.replace_cart(cart, expected).await?,
            None => false,
        };
        if saved {
            Ok(())
        } else {
            Err(self.cart_write_missed(cart.id).await)
        }
    }

    /// Reads the cart, decides as the contract says, then writes with a version check;
    /// a concurrent write makes it read and decide again.
    async fn set_cart_status(&self, id: CartId, from: CartStatus, to: CartStatus, now: DateTime<Utc>) -> Result<Cart> {
        for _ in 0..ATTEMPTS {
            let stored = self.get_cart(id).await?;
            if stored.status == to {
                return Ok(stored);
            }
            if stored.status != from {
                return Err(Error::conflict(
                    "cart_changed",
                    "the cart is no longer in the expected state",
                ));
            }
            let next = Cart {
                status: to,
                version: stored.version.saturating_add(1),
                updated_at: now,
                ..stored.clone()
            };
            if self.replace_cart(&next, stored.version).await? {
                return Ok(next);
            }
        }
        Err(cart_changed())
    }

    async fn delete_expired_carts(&self, now: DateTime<Utc>) -> Result<u64> {
        let deleted = self
            .carts
            .delete_many(doc! { "expiresAt": { "$lte": convert::date(now) } })
            .await
            .or_storage()?;
        Ok(deleted.deleted_count)
    }

    async fn find_cart_by_order(&self, order: OrderId) -> Result<Option<Cart>> {
        self.find_cart(status_filter(CartStatus::Converted(order))).await
    }
}
