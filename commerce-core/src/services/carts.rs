//! Carts: a user's or a guest's basket, priced from the catalog and stock on every read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::tokens::{Principal, TokenIssuer, hash_refresh};
use crate::domain::{
    Cart, CartId, CartItem, CartItemId, CartOwner, CartStatus, Currency, Money, Product, ProductStatus, Quantity, Sku,
};
use crate::ports::{CartStore, InventoryStore, ProductStore};
use crate::{Error, Result, Validator};

/// Cart rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartPolicy {
    /// The store's currency; lines priced otherwise cannot be bought.
    pub currency: Currency,
    /// Most units of one SKU in a cart.
    pub max_line_quantity: u32,
    /// Most distinct lines.
    pub max_lines: usize,
    /// How long an untouched cart lives.
    pub ttl: Duration,
}

impl Default for CartPolicy {
    fn default() -> Self {
        Self {
            currency: Currency::USD,
            max_line_quantity: 99,
            max_lines: 100,
            ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Who is shopping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shopper {
    /// A signed-in user.
    User(Principal),
    /// A guest holding an opaque cart token.
    Guest(String),
}

impl Shopper {
    fn owner(&self) -> CartOwner {
        match self {
            Self::User(p) => CartOwner::User(p.user_id),
            // Only the token's hash is stored, like refresh tokens.
            Self::Guest(token) => CartOwner::Guest(hash_refresh(token)),
        }
    }
}

/// Why a cart line cannot be bought as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineIssue {
    /// The product or variant is gone, or no longer on sale.
    Unavailable,
    /// Fewer units are available than the line asks for.
    InsufficientStock,
    /// Priced in another currency than the store's.
    CurrencyMismatch,
}

impl LineIssue {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::InsufficientStock => "insufficient_stock",
            Self::CurrencyMismatch => "currency_mismatch",
        }
    }
}

/// A cart line as priced now.
#[derive(Debug, Clone, PartialEq)]
pub struct PricedLine {
    /// The stored line.
    pub item: CartItem,
    /// The product, when it still exists (shared by the lines of its variants).
    pub product: Option<Arc<Product>>,
    /// Current unit price.
    pub unit_price: Option<Money>,
    /// `unit_price * quantity`.
    pub line_total: Option<Money>,
    /// Units available now (never stocked counts as none).
    pub available: i64,
    /// What stops it being bought, if anything.
    pub issue: Option<LineIssue>,
}

/// A cart priced from the catalog and stock now.
#[derive(Debug, Clone, PartialEq)]
pub struct PricedCart {
    /// The stored cart (absent when the shopper has none yet).
    pub cart: Option<Cart>,
    /// Lines, in the order they were added.
    pub lines: Vec<PricedLine>,
    /// Sum of the buyable lines.
    pub subtotal: Money,
    /// Whether every line can be bought.
    pub ready: bool,
}

/// The catalog and stock read for some SKUs a moment ago:
/// [`ProductStore::find_products_by_skus`]'s and [`InventoryStore::available`]'s answers for
/// `asked`.
#[derive(Debug, Clone)]
struct KnownSkus {
    asked: Vec<Sku>,
    products: Vec<Arc<Product>>,
    available: Vec<(Sku, i64)>,
}

/// Whether and how pricing a cart learns the stock.
#[derive(Debug, Clone, Copy)]
enum StockCheck<'a> {
    /// Read what is available and flag lines asking for more.
    Read,
    /// As `Read`, reusing the products and stock read a moment ago when they cover every SKU
    /// of the cart.
    Known(&'a KnownSkus),
    /// Price from the catalog alone.
    Skip,
}

/// Cart use cases.
#[derive(Clone)]
pub struct CartService {
    carts: Arc<dyn CartStore>,
    products: Arc<dyn ProductStore>,
    inventory: Arc<dyn InventoryStore>,
    policy: CartPolicy,
    tokens: TokenIssuer,
}

/// How long an expired cart is kept before [`CartService::purge_expired`] drops it. A checkout
/// leaves the record of its cart's conversion to the cart itself until recovery (every minute
/// or so) notes it in the saga log; a cart that expired right after its checkout must still be
/// there for that, or recovery would take the order for one whose cart moved on and cancel it.
pub const PURGE_GRACE: chrono::Duration = chrono::Duration::hours(1);

/// Times a write is retried when another request changed the cart meanwhile.
const RETRIES: usize = 5;

impl CartService {
    /// Wires the service.
    pub fn new(
        carts: Arc<dyn CartStore>,
        products: Arc<dyn ProductStore>,
        inventory: Arc<dyn InventoryStore>,
        policy: CartPolicy,
        tokens: TokenIssuer,
    ) -> Self {
        Self {
            carts,
            products,
            inventory,
            policy,
            tokens,
        }
    }

    /// The rules in force.
    pub fn policy(&self) -> &CartPolicy {
        &self.policy
    }

    /// A new opaque guest cart token (256 random bits); only its hash is stored.
    pub fn new_guest_token(&self) -> String {
        self.tokens.mint_refresh().0
    }

    fn expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.policy.ttl).unwrap_or_else(|_| chrono::Duration::days(30))
    }

    /// The shopper's cart, priced now. A shopper without a cart gets an empty one.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn cart(&self, shopper: &Shopper) -> Result<PricedCart> {
        let cart = self.carts.find_active_cart(&shopper.owner(), Utc::now()).await?;
        self.price(cart).await
    }

    /// Prices a cart (or nothing) from the catalog and stock.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn price(&self, cart: Option<Cart>) -> Result<PricedCart> {
        self.price_with(cart, StockCheck::Read).await
    }

    /// The shopper's cart priced from the catalog alone, for checkout, where the stock
    /// reservation itself decides shortages (and backorders): no line has
    /// [`LineIssue::InsufficientStock`] and `available` is 0 on every line.
    ///
    /// # Errors
    /// Storage failures only.
    pub(crate) async fn cart_for_checkout(&self, shopper: &Shopper) -> Result<PricedCart> {
        let cart = self.carts.find_active_cart(&shopper.owner(), Utc::now()).await?;
        self.price_with(cart, StockCheck::Skip).await
    }

    async fn price_with(&self, cart: Option<Cart>, stock_check: StockCheck<'_>) -> Result<PricedCart> {
        let items = cart.as_ref().map(|c| c.items.clone()).unwrap_or_default();
        let skus: Vec<Sku> = items.iter().map(|i| i.sku.clone()).collect();
        let (products, stock) = if skus.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            // Products are shared by the lines (several variants of one product), not cloned per line.
            match stock_check {
                StockCheck::Known(known) if skus.iter().all(|s| known.asked.contains(s)) => {
                    (known.products.clone(), known.available.clone())
                }
                StockCheck::Skip => (self.products.find_products_by_skus(&skus).await?, Vec::new()),
                StockCheck::Read | StockCheck::Known(_) => (
                    self.products.find_products_by_skus(&skus).await?,
                    self.inventory.available(&skus).await?,
                ),
            }
        };
        let stock_check = !matches!(stock_check, StockCheck::Skip);
        let stock: HashMap<Sku, i64> = stock.into_iter().collect();
        let mut subtotal = Money::zero(self.policy.currency);
        let mut ready = !items.is_empty();
        let mut lines = Vec::with_capacity(items.len());
        for item in items {
            // One scan for the product and its variant's price (a variant is not cloned).
            let found = products.iter().find_map(|p| p.variant(&item.sku).map(|v| (p, v.price)));
            let product = found.map(|(p, _)| Arc::clone(p));
            let available = stock.get(&item.sku).copied().unwrap_or(0);
            let mut issue = None;
            let (mut unit_price, mut line_total) = (None, None);
            match found {
                Some((p, price)) if p.status == ProductStatus::Active => {
                    unit_price = Some(price);
                    line_total = price.checked_mul(i64::from(item.quantity.get())).ok();
                    if price.currency != self.policy.currency {
                        issue = Some(LineIssue::CurrencyMismatch);
                    } else if stock_check
                        && available < i64::from(item.quantity.get())
                        && !self.backorders(&item.sku).await?
                    {
                        issue = Some(LineIssue::InsufficientStock);
                    }
                }
                _ => issue = Some(LineIssue::Unavailable),
            }
            if issue.is_none() {
                if let Some(total) = line_total {
                    subtotal = subtotal.checked_add(total).map_err(Error::unexpected)?;
                }
            } else {
                ready = false;
            }
            lines.push(PricedLine {
                item,
                product,
                unit_price,
                line_total,
                available,
                issue,
            });
        }
        Ok(PricedCart {
            cart,
            lines,
            subtotal,
            ready,
        })
    }

    /// Runs `change` on `current`, the shopper's active cart as the caller has just read it
    /// (created when there is none), and saves it; when another request changed the cart
    /// meanwhile, reads it again and retries.
    async fn modify(
        &self,
        shopper: &Shopper,
        mut current: Option<Cart>,
        stock: StockCheck<'_>,
        change: impl Fn(&mut Cart) -> Result<()>,
    ) -> Result<PricedCart> {
        let owner = shopper.owner();
        for attempt in 0..RETRIES {
            let now = Utc::now();
            let existing = if attempt == 0 {
                current.take()
            } else {
                self.carts.find_active_cart(&owner, now).await?
            };
            let is_new = existing.is_none();
            let mut cart = existing.unwrap_or_else(|| Cart {
                id: CartId::new(),
                owner: owner.clone(),
                items: Vec::new(),
                status: CartStatus::Active,
                version: 0,
                created_at: now,
                updated_at: now,
                expires_at: self.expiry(now),
            });
            change(&mut cart)?;
            cart.updated_at = now;
            cart.expires_at = self.expiry(now);
            let written = if is_new {
                cart.version = 0;
                self.carts.insert_cart(&cart).await
            } else {
                cart.version += 1;
                self.carts.save_cart(&cart).await
            };
            match written {
                Ok(()) => return self.price_with(Some(cart), stock).await,
                Err(Error::Conflict {
                    code: "cart_changed" | "cart_exists",
                    ..
                }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(
            "cart_busy",
            "the cart is being changed by another request; try again",
        ))
    }

    /// Whether any warehouse sells this SKU beyond its stock (asked only on a shortage).
    async fn backorders(&self, sku: &Sku) -> Result<bool> {
        Ok(self
            .inventory
            .stock_levels(sku)
            .await?
            .iter()
            .any(|l| l.backorder_allowed))
    }

    /// Checks that `quantity` units of `sku` can go in `cart`. The products and stock are read
    /// for every SKU of the cart at once, and returned, so that pricing the changed cart need
    /// not read them again.
    async fn check_buyable(&self, cart: Option<&Cart>, sku: &Sku, quantity: u32) -> Result<KnownSkus> {
        let mut asked: Vec<Sku> = cart
            .map(|c| c.items.iter().map(|i| i.sku.clone()).collect())
            .unwrap_or_default();
        if !asked.contains(sku) {
            asked.push(sku.clone());
        }
        let products = self.products.find_products_by_skus(&asked).await?;
        match products.iter().find(|p| p.variant(sku).is_some()) {
            Some(p) if p.status == ProductStatus::Active => {}
            _ => return Err(Error::invalid("sku", "no product on sale has this SKU")),
        }
        let known = KnownSkus {
            available: self.inventory.available(&asked).await?,
            products,
            asked,
        };
        let available: i64 = known.available.iter().filter(|(s, _)| s == sku).map(|(_, n)| n).sum();
        if available < i64::from(quantity) && !self.backorders(sku).await? {
            return Err(Error::OutOfStock {
                sku: sku.to_string(),
                requested: i64::from(quantity),
                available: available.max(0),
            });
        }
        Ok(known)
    }

    fn quantity(&self, field: &str, raw: i64) -> Result<Quantity> {
        let q = Quantity::new(raw).map_err(|e| Error::invalid(field, e.to_string()))?;
        if q.get() > self.policy.max_line_quantity {
            return Err(Error::invalid(
                field,
                format!("must be at most {} per item", self.policy.max_line_quantity),
            ));
        }
        Ok(q)
    }

    /// Adds units of a SKU (to its line when there is one).
    ///
    /// # Errors
    /// `Validation { field: "sku" | "quantity" }` (unknown SKU, line limit, too many lines);
    /// `OutOfStock` when the cart would hold more than is available.
    pub async fn add_item(&self, shopper: &Shopper, raw_sku: &str, quantity: i64) -> Result<PricedCart> {
        let mut v = Validator::new();
        let sku = v.check("sku", Sku::parse(raw_sku));
        let qty = v.absorb("quantity", self.quantity("quantity", quantity));
        v.finish()?;
        let (Some(sku), Some(qty)) = (sku, qty) else {
            return Err(Error::unexpected_msg("validator passed without values"));
        };
        let current = self.carts.find_active_cart(&shopper.owner(), Utc::now()).await?;
        let already = current
            .as_ref()
            .and_then(|c| c.items.iter().find(|i| i.sku == sku))
            .map_or(0, |i| i.quantity.get());
        let stock = self.check_buyable(current.as_ref(), &sku, already + qty.get()).await?;
        let max = self.policy.max_line_quantity;
        let max_lines = self.policy.max_lines;
        self.modify(shopper, current, StockCheck::Known(&stock), |cart| {
            if let Some(line) = cart.items.iter_mut().find(|i| i.sku == sku) {
                let total = line.quantity.get() + qty.get();
                if total > max {
                    return Err(Error::invalid(
                        "quantity",
                        format!("must be at most {max} per item in all"),
                    ));
                }
                line.quantity =
                    Quantity::new(i64::from(total)).map_err(|e| Error::invalid("quantity", e.to_string()))?;
            } else {
                if cart.items.len() >= max_lines {
                    return Err(Error::invalid(
                        "sku",
                        format!("a cart holds at most {max_lines} different items"),
                    ));
                }
                cart.items.push(CartItem {
                    id: CartItemId::new(),
                    sku: sku.clone(),
                    quantity: qty,
                    added_at: Utc::now(),
                });
            }
            Ok(())
        })
        .await
    }

    /// Sets a line's quantity.
    ///
    /// # Errors
    /// `Validation { field: "quantity" }`; `NotFound { entity: "cart item" }`; `OutOfStock`.
    pub async fn update_item(&self, shopper: &Shopper, item: CartItemId, quantity: i64) -> Result<PricedCart> {
        let qty = self.quantity("quantity", quantity)?;
        let current = self.carts.find_active_cart(&shopper.owner(), Utc::now()).await?;
        let line = current
            .as_ref()
            .and_then(|c| c.items.iter().find(|i| i.id == item))
            .cloned();
        let Some(line) = line else {
            return Err(Error::NotFound { entity: "cart item" });
        };
        // Only more units need checking; fewer are priced from a fresh read.
        let checked = if qty > line.quantity {
            Some(self.check_buyable(current.as_ref(), &line.sku, qty.get()).await?)
        } else {
            None
        };
        let stock = checked.as_ref().map_or(StockCheck::Read, StockCheck::Known);
        self.modify(shopper, current, stock, |cart| {
            let line = cart
                .items
                .iter_mut()
                .find(|i| i.id == item)
                .ok_or(Error::NotFound { entity: "cart item" })?;
            line.quantity = qty;
            Ok(())
        })
        .await
    }

    /// Removes a line.
    ///
    /// # Errors
    /// `NotFound { entity: "cart item" }`.
    pub async fn remove_item(&self, shopper: &Shopper, item: CartItemId) -> Result<PricedCart> {
        let current = self.carts.find_active_cart(&shopper.owner(), Utc::now()).await?;
        if !current.as_ref().is_some_and(|c| c.items.iter().any(|i| i.id == item)) {
            return Err(Error::NotFound { entity: "cart item" });
        }
        self.modify(shopper, current, StockCheck::Read, |cart| {
            let before = cart.items.len();
            cart.items.retain(|i| i.id != item);
            if cart.items.len() == before {
                Err(Error::NotFound { entity: "cart item" })
            } else {
                Ok(())
            }
        })
        .await
    }

    /// Folds a guest's cart into the user's at sign-in: quantities add up, capped at the
    /// per-line limit; the guest cart is marked merged. Nothing happens without a guest cart.
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn merge_guest_cart(&self, guest_token: &str, user: &Principal) -> Result<PricedCart> {
        let guest = Shopper::Guest(guest_token.to_owned());
        let me = Shopper::User(*user);
        let Some(guest_cart) = self.carts.find_active_cart(&guest.owner(), Utc::now()).await? else {
            return self.cart(&me).await;
        };
        let max = self.policy.max_line_quantity;
        let max_lines = self.policy.max_lines;
        let items = guest_cart.items.clone();
        let mine = self.carts.find_active_cart(&me.owner(), Utc::now()).await?;
        let merged = self
            .modify(&me, mine, StockCheck::Read, |cart| {
                for g in &items {
                    if let Some(line) = cart.items.iter_mut().find(|i| i.sku == g.sku) {
                        let total = (line.quantity.get() + g.quantity.get()).min(max);
                        line.quantity = Quantity::new(i64::from(total)).map_err(Error::unexpected)?;
                    } else if cart.items.len() < max_lines {
                        let q = Quantity::new(i64::from(g.quantity.get().min(max))).map_err(Error::unexpected)?;
                        cart.items.push(CartItem {
                            id: CartItemId::new(),
                            sku: g.sku.clone(),
                            quantity: q,
                            added_at: g.added_at,
                        });
                    }
                }
                Ok(())
            })
            .await?;
        self.carts
            .set_cart_status(guest_cart.id, CartStatus::Active, CartStatus::Merged, Utc::now())
            .await?;
        Ok(merged)
    }

    /// Drops carts expired for longer than [`PURGE_GRACE`] (run periodically).
    ///
    /// # Errors
    /// Storage failures only.
    pub async fn purge_expired(&self) -> Result<u64> {
        self.carts.delete_expired_carts(Utc::now() - PURGE_GRACE).await
    }
}
