//! A realistic demo store (feature `demo`): a category tree, products with variants, stock and
//! reviews, generated deterministically, through the services (so every rule applies). Used by
//! `commerce-server seed`, the in-memory host's `SEED_DEMO_PRODUCTS`, and the benchmarks.

use std::collections::BTreeMap;

use crate::domain::{Category, Product, ProductId, ProductStatus, Role, UserId};
use crate::services::{
    CategoryInput, MAX_STOCK_ITEMS, MoneyInput, NewAccount, Principal, ProductInput, ReviewInput, StockInput,
    StockItem, VariantInput,
};
use crate::{Commerce, Error, Result};

/// How much to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoOptions {
    /// Products to create.
    pub products: usize,
    /// Customers who write reviews.
    pub reviewers: usize,
    /// Products (the first ones) that get reviews.
    pub reviewed_products: usize,
    /// Seed of the generator: the same seed gives the same store.
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            products: 1_000,
            reviewers: 12,
            reviewed_products: 150,
            seed: 7,
        }
    }
}

/// What was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoReport {
    /// Categories.
    pub categories: usize,
    /// Products.
    pub products: usize,
    /// Variants (SKUs) stocked.
    pub skus: usize,
    /// Reviews.
    pub reviews: usize,
}

/// SplitMix64: tiny, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One leaf category's vocabulary.
struct Line {
    parent: &'static str,
    name: &'static str,
    nouns: &'static [&'static str],
    sizes: &'static [&'static str],
    price_range: (i64, i64),
}

const LINES: &[Line] = &[
    Line {
        parent: "Clothing",
        name: "T-Shirts",
        nouns: &["Tee", "Crew Neck T-Shirt", "V-Neck Tee", "Pocket Tee"],
        sizes: &["XS", "S", "M", "L", "XL"],
        price_range: (1_200, 4_500),
    },
    Line {
        parent: "Clothing",
        name: "Jackets",
        nouns: &["Rain Jacket", "Denim Jacket", "Puffer Jacket", "Field Jacket"],
        sizes: &["S", "M", "L", "XL"],
        price_range: (6_000, 32_000),
    },
    Line {
        parent: "Clothing",
        name: "Shoes",
        nouns: &["Running Shoe", "Sneaker", "Hiking Boot", "Loafer"],
        sizes: &["38", "39", "40", "41", "42", "43", "44"],
        price_range: (4_500, 18_000),
    },
    Line {
        parent: "Home & Kitchen",
        name: "Cookware",
        nouns: &["Skillet", "Saucepan", "Dutch Oven", "Wok"],
        sizes: &["20 cm", "24 cm", "28 cm"],
        price_range: (2_500, 24_000),
    },
    Line {
        parent: "Home & Kitchen",
        name: "Lighting",
        nouns: &["Desk Lamp", "Floor Lamp", "Pendant Light", "Lantern"],
        sizes: &[],
        price_range: (1_900, 21_000),
    },
    Line {
        parent: "Home & Kitchen",
        name: "Tableware",
        nouns: &["Mug", "Dinner Plate", "Bowl", "Carafe"],
        sizes: &[],
        price_range: (600, 6_000),
    },
    Line {
        parent: "Electronics",
        name: "Audio",
        nouns: &["Headphones", "Earbuds", "Bluetooth Speaker", "Turntable"],
        sizes: &[],
        price_range: (2_900, 45_000),
    },
    Line {
        parent: "Electronics",
        name: "Accessories",
        nouns: &["USB-C Cable", "Charger", "Power Bank", "Phone Case"],
        sizes: &[],
        price_range: (900, 7_900),
    },
    Line {
        parent: "Sports & Outdoors",
        name: "Camping",
        nouns: &["Tent", "Sleeping Bag", "Camp Stove", "Backpack"],
        sizes: &[],
        price_range: (3_500, 39_000),
    },
    Line {
        parent: "Sports & Outdoors",
        name: "Cycling",
        nouns: &["Helmet", "Bike Light", "Water Bottle", "Cycling Gloves"],
        sizes: &["S", "M", "L"],
        price_range: (900, 14_000),
    },
    Line {
        parent: "Beauty",
        name: "Skincare",
        nouns: &["Face Cream", "Cleanser", "Serum", "Lip Balm"],
        sizes: &["30 ml", "50 ml", "100 ml"],
        price_range: (700, 8_900),
    },
    Line {
        parent: "Books",
        name: "Cookbooks",
        nouns: &["Cookbook", "Baking Book", "Guide to Spices"],
        sizes: &[],
        price_range: (1_500, 4_500),
    },
];

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Everyday",
    "Premium",
    "Lightweight",
    "Organic",
    "Vintage",
    "Compact",
    "Rugged",
    "Essential",
    "Deluxe",
    "Crème",
    "Nordic",
    "Café",
    "Urban",
    "Alpine",
];
const MATERIALS: &[&str] = &[
    "Cotton",
    "Linen",
    "Wool",
    "Leather",
    "Bamboo",
    "Steel",
    "Cast Iron",
    "Ceramic",
    "Recycled",
    "Walnut",
];
const COLORS: &[&str] = &["Black", "White", "Navy", "Olive", "Sand", "Red", "Forest", "Slate"];
const BRANDS: &[&str] = &[
    "Northwind",
    "Acme",
    "Fjällräven & Co",
    "Lumen",
    "Tidewater",
    "Kestrel",
    "Olé",
    "Basecamp",
    "Hearth",
    "Vega",
];
const TAGS: &[&str] = &[
    "new",
    "bestseller",
    "eco",
    "gift",
    "sale",
    "limited",
    "handmade",
    "travel",
];
const REVIEW_TITLES: &[&str] = &[
    "Love it",
    "Does the job",
    "Great value",
    "Not for me",
    "Exceeded expectations",
    "Solid quality",
];
const REVIEW_BODIES: &[&str] = &[
    "Arrived quickly and works exactly as described.",
    "Good quality for the price; I would buy it again.",
    "The fit was a little off, but customer service helped.",
    "Beautiful finish and feels sturdy.",
    "It's fine. Nothing special, nothing wrong.",
];

/// Generates the demo store through the services, as `admin` (a superadmin's principal).
///
/// # Errors
/// The first service error (e.g. the demo was already loaded: `Conflict`).
pub async fn seed(commerce: &Commerce, admin: &Principal, options: DemoOptions) -> Result<DemoReport> {
    let mut rng = Rng(options.seed);
    let mut report = DemoReport::default();
    let catalog = commerce.catalog();

    let mut roots: BTreeMap<&str, Category> = BTreeMap::new();
    let mut leaves: Vec<(Category, &Line)> = Vec::new();
    for (i, line) in LINES.iter().enumerate() {
        if !roots.contains_key(line.parent) {
            let root = catalog
                .create_category(
                    admin,
                    CategoryInput {
                        name: line.parent.to_owned(),
                        sort_order: Some(i as i32),
                        ..CategoryInput::default()
                    },
                )
                .await?;
            roots.insert(line.parent, root);
            report.categories += 1;
        }
        let parent = roots.get(line.parent).map(|c| c.id.to_string());
        let leaf = catalog
            .create_category(
                admin,
                CategoryInput {
                    name: line.name.to_owned(),
                    parent_id: parent,
                    sort_order: Some(i as i32),
                    ..CategoryInput::default()
                },
            )
            .await?;
        report.categories += 1;
        leaves.push((leaf, line));
    }

    // Each batch is stocked as soon as it is created and dropped: keeping every created
    // product until the end held a second copy of the catalog (at 100,000 products ~0.9 GiB)
    // whose freed pages the allocator then kept resident.
    let mut stock_rng = Rng(options.seed ^ STOCK_STREAM);
    let mut reviewed: Vec<ProductId> = Vec::with_capacity(options.reviewed_products);
    let mut batch = Vec::with_capacity(BATCH);
    for n in 0..options.products {
        let (leaf, line) = &leaves[rng.below(leaves.len())];
        batch.push(product_input(&mut rng, n, leaf, line));
        if batch.len() == BATCH || n + 1 == options.products {
            let mut stock = Vec::new();
            for result in catalog.create_products(admin, std::mem::take(&mut batch)).await? {
                let product = result?;
                report.products += 1;
                stock_items(&product, &mut stock_rng, &mut stock);
                if product.status == ProductStatus::Active && reviewed.len() < options.reviewed_products {
                    reviewed.push(product.id);
                }
            }
            // The batch's stock in as few calls as the bulk limit allows: on PostgreSQL one
            // transaction each instead of two per SKU.
            report.skus += stock.len();
            for chunk in stock.chunks(MAX_STOCK_ITEMS) {
                stock_up(commerce, admin, chunk).await?;
            }
        }
    }

    let mut reviewers: Vec<Principal> = Vec::new();
    for i in 0..options.reviewers {
        let (email, password) = (
            format!("shopper{i}-{}@demo.example", options.seed),
            format!("demo-password-{i}"),
        );
        let registered = commerce
            .accounts()
            .register(NewAccount {
                email: email.clone(),
                password: password.clone(),
                first_name: (*rng.pick(&["Ada", "Grace", "Alan", "Linus", "Barbara", "Ken", "Margaret", "Dennis"]))
                    .to_owned(),
                last_name: (*rng.pick(&[
                    "Lovelace", "Hopper", "Turing", "Liskov", "Thompson", "Hamilton", "Ritchie",
                ]))
                .to_owned(),
                phone: None,
            })
            .await;
        let session = match registered {
            // Seeded before into accounts that outlive the catalog (PostgreSQL beside a catalog
            // in memory, empty again after a restart): the shopper is the one made then.
            Err(Error::Conflict { .. }) => commerce.accounts().login(&email, &password).await?,
            other => other?,
        };
        reviewers.push(Principal {
            user_id: session.user.id,
            role: Role::Customer,
        });
    }
    for &product in &reviewed {
        let count = rng.below(reviewers.len().min(6) + 1);
        for reviewer in reviewers.iter().take(count) {
            let input = ReviewInput {
                rating: 1 + (rng.below(5) as i64).max(rng.below(5) as i64),
                title: (*rng.pick(REVIEW_TITLES)).to_owned(),
                body: (*rng.pick(REVIEW_BODIES)).to_owned(),
            };
            catalog.add_review(reviewer, product, input).await?;
            report.reviews += 1;
        }
    }
    Ok(report)
}

/// Products created per call.
const BATCH: usize = 100;
/// Stock levels come from a generator of their own, so the products do not depend on when
/// their stock is set.
const STOCK_STREAM: u64 = 0x5707_C0DE_5707_C0DE;

/// Sets the demo's stock in one call. A catalog seeded again beside stock that outlived it (a
/// host restarted on its database) may find levels reserving more than the demo's count: those
/// keep the count they have, and the others are set one by one.
async fn stock_up(commerce: &Commerce, admin: &Principal, items: &[StockItem]) -> Result<()> {
    let below_reserved =
        |e: &Error| matches!(e, Error::Validation(fields) if fields.iter().all(|f| f.field.ends_with("onHand")));
    match commerce.inventory().set_stock_many(admin, items.to_vec()).await {
        Err(e) if below_reserved(&e) => {}
        other => return other.map(drop),
    }
    for item in items {
        match commerce
            .inventory()
            .set_stock(admin, &item.sku, item.input.clone())
            .await
        {
            Err(e) if below_reserved(&e) => {}
            other => other.map(drop)?,
        }
    }
    Ok(())
}

/// The stock of every variant of `product` (8 % of them out of stock), added to `items`.
fn stock_items(product: &Product, rng: &mut Rng, items: &mut Vec<StockItem>) {
    for variant in &product.variants {
        let on_hand = if rng.chance(8) { 0 } else { 5 + rng.below(200) as i64 };
        items.push(StockItem {
            sku: variant.sku.as_str().to_owned(),
            input: StockInput {
                on_hand: Some(on_hand),
                low_stock_threshold: Some(5),
                reorder_point: Some(10),
                ..StockInput::default()
            },
        });
    }
}

fn product_input(rng: &mut Rng, n: usize, leaf: &Category, line: &Line) -> ProductInput {
    let adjective = *rng.pick(ADJECTIVES);
    let material = *rng.pick(MATERIALS);
    let noun = *rng.pick(line.nouns);
    let brand = *rng.pick(BRANDS);
    let name = format!("{adjective} {material} {noun}");
    let (lo, hi) = line.price_range;
    let base = lo + rng.below((hi - lo) as usize) as i64;
    let base = base - base % 100 + 99;
    let colors: Vec<&str> = (0..1 + rng.below(3)).map(|_| *rng.pick(COLORS)).collect();
    let mut variants = Vec::new();
    let sizes: Vec<Option<&str>> = if line.sizes.is_empty() {
        vec![None]
    } else {
        line.sizes.iter().map(|s| Some(*s)).collect()
    };
    for (ci, color) in colors.iter().enumerate() {
        if variants
            .iter()
            .any(|v: &VariantInput| v.options.get("color").is_some_and(|c| c == color))
        {
            continue;
        }
        for (si, size) in sizes.iter().enumerate() {
            let mut options = BTreeMap::from([("color".to_owned(), (*color).to_owned())]);
            if let Some(size) = size {
                options.insert("size".to_owned(), (*size).to_owned());
            }
            let on_sale = rng.chance(15);
            variants.push(VariantInput {
                sku: format!("DEMO-{n:06}-{ci}{si}"),
                name: Some(size.map_or_else(|| (*color).to_owned(), |s| format!("{color} / {s}"))),
                options,
                price: MoneyInput {
                    amount: if on_sale { base * 8 / 10 } else { base },
                    currency: "USD".to_owned(),
                },
                compare_at_price: on_sale.then(|| MoneyInput {
                    amount: base,
                    currency: "USD".to_owned(),
                }),
                weight_grams: Some(100 + rng.below(3_000) as i64),
                dimensions: Some((
                    100 + rng.below(500) as i64,
                    50 + rng.below(300) as i64,
                    10 + rng.below(200) as i64,
                )),
            });
        }
    }
    let mut tags: Vec<String> = (0..rng.below(3)).map(|_| (*rng.pick(TAGS)).to_owned()).collect();
    tags.push(line.name.to_lowercase());
    let status = if rng.chance(4) { "draft" } else { "active" };
    let visibility = if rng.chance(5) {
        "featured"
    } else if rng.chance(2) {
        "hidden"
    } else {
        "public"
    };
    ProductInput {
        slug: None,
        description: format!(
            "The {name} by {brand} is made from {} {}. Designed for everyday use, it pairs well with the rest \
             of our {} range. Care: see label.",
            material.to_lowercase(),
            if material == "Recycled" {
                "materials"
            } else {
                "of the finest grade"
            },
            line.name.to_lowercase()
        ),
        short_description: Some(format!("{material} {} by {brand}.", noun.to_lowercase())),
        brand: Some(brand.to_owned()),
        tags,
        category_id: Some(leaf.id.to_string()),
        subcategory_ids: Vec::new(),
        specifications: BTreeMap::from([("Material".to_owned(), material.to_owned())]),
        status: Some(status.to_owned()),
        visibility: Some(visibility.to_owned()),
        meta_title: Some(name.chars().take(60).collect()),
        meta_description: None,
        keywords: Vec::new(),
        variants,
        name,
    }
}

/// A superadmin principal for seeding, without signing in.
pub fn seeding_principal(user: UserId) -> Principal {
    Principal {
        user_id: user,
        role: Role::Superadmin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::CommerceConfig;
    use crate::domain::AddressFields;
    use crate::domain::PageRequest;
    use crate::memory::MemoryStore;
    use crate::services::{AddressInput, CheckoutInput, HashCost, SearchInput, Shopper, TokenConfig};

    fn config() -> CommerceConfig {
        CommerceConfig {
            tokens: TokenConfig::ephemeral(),
            hash_cost: HashCost::insecure_for_tests(),
            ..CommerceConfig::default()
        }
    }

    /// Seeds as the store's superadmin, made (or found) first, as the host does.
    async fn seeded_by_its_owner(commerce: &Commerce, options: DemoOptions) -> DemoReport {
        let owner = commerce
            .accounts()
            .ensure_superadmin("owner@demo.example", "owner-password")
            .await
            .unwrap();
        seed(commerce, &seeding_principal(owner.id), options).await.unwrap()
    }

    #[tokio::test]
    async fn seeds_again_beside_accounts_that_outlived_the_catalog() {
        let accounts = Arc::new(MemoryStore::new());
        let mut reviews = Vec::new();
        // Two starts of a host whose accounts persist and whose catalog starts empty.
        for _ in 0..2 {
            let commerce = Commerce::builder()
                .config(config())
                .accounts(accounts.clone())
                .build()
                .unwrap();
            let options = DemoOptions {
                products: 30,
                reviewers: 3,
                reviewed_products: 10,
                seed: 1,
            };
            let report = seeded_by_its_owner(&commerce, options).await;
            assert_eq!(report.products, 30);
            reviews.push(report.reviews);
        }
        assert!(
            reviews[0] > 0 && reviews[0] == reviews[1],
            "the same shoppers review again: {reviews:?}"
        );
    }

    #[tokio::test]
    async fn seeds_again_beside_stock_that_holds_reservations() {
        let (accounts, checkout) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
        // A host whose accounts, orders and stock persist and whose catalog starts empty.
        let start = || {
            Commerce::builder()
                .config(config())
                .accounts(accounts.clone())
                .checkout(checkout.clone())
                .build()
                .unwrap()
        };
        let options = DemoOptions {
            products: 30,
            reviewers: 0,
            reviewed_products: 0,
            seed: 1,
        };
        let commerce = start();
        seeded_by_its_owner(&commerce, options).await;
        let admin = seeding_principal(
            commerce
                .accounts()
                .ensure_superadmin("owner@demo.example", "owner-password")
                .await
                .unwrap()
                .id,
        );
        // A SKU of a listed product whose demo count is under what one cart line can hold.
        let listed = commerce.catalog().search(None, SearchInput::default()).await.unwrap();
        let mut scarce = None;
        for variant in listed.page.items.iter().flat_map(|p| p.variants.iter()) {
            let levels = commerce.inventory().levels(&admin, variant.sku.as_str()).await.unwrap();
            if !levels.is_empty() && levels.iter().all(|l| (1..90).contains(&l.on_hand)) {
                scarce = Some((variant.sku.as_str().to_owned(), levels[0].on_hand));
                break;
            }
        }
        let (sku, demo_count) = scarce.expect("a demo SKU with fewer than 90 units");
        // Restocked, then mostly reserved by an order: more than the demo's count.
        let restock = StockInput {
            on_hand: Some(500),
            ..StockInput::default()
        };
        commerce.inventory().set_stock(&admin, &sku, restock).await.unwrap();
        let session = commerce
            .accounts()
            .register(NewAccount {
                email: "buyer@demo.example".into(),
                password: "buyer-password-1".into(),
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
                phone: None,
            })
            .await
            .unwrap();
        let buyer = Principal {
            user_id: session.user.id,
            role: session.user.role,
        };
        let home = AddressFields {
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            line1: "12 St James's Square".into(),
            city: "London".into(),
            postal_code: "SW1Y 4JH".into(),
            country: "GB".into(),
            ..AddressFields::default()
        };
        let address = AddressInput {
            fields: home,
            is_default: true,
        };
        commerce.accounts().add_address(&buyer, address).await.unwrap();
        commerce
            .carts()
            .add_item(&Shopper::User(buyer), &sku, 95)
            .await
            .unwrap();
        commerce
            .orders()
            .checkout(&buyer, CheckoutInput::default())
            .await
            .unwrap();

        let commerce = start();
        let report = seeded_by_its_owner(&commerce, options).await;
        assert_eq!(report.products, 30);
        let levels = commerce.inventory().levels(&admin, &sku).await.unwrap();
        assert_eq!(levels[0].reserved, 95);
        assert_eq!(levels[0].on_hand, 500, "kept, not set back to the demo's {demo_count}");
    }

    #[tokio::test]
    async fn seeds_a_browsable_store() {
        let commerce = Commerce::in_memory(config()).unwrap();
        let options = DemoOptions {
            products: 120,
            reviewers: 4,
            reviewed_products: 20,
            seed: 1,
        };
        let report = seeded_by_its_owner(&commerce, options).await;
        assert_eq!(report.products, 120);
        let roots: std::collections::BTreeSet<_> = LINES.iter().map(|l| l.parent).collect();
        assert_eq!(report.categories, roots.len() + LINES.len());
        assert!(report.skus >= 120 && report.reviews > 0, "{report:?}");
        let listed = commerce
            .catalog()
            .search(
                None,
                SearchInput {
                    page: PageRequest::default(),
                    ..SearchInput::default()
                },
            )
            .await
            .unwrap();
        assert!(
            listed.page.total > 80 && listed.page.total < 120,
            "drafts and hidden products are not listed: {}",
            listed.page.total
        );
        let creme = commerce
            .catalog()
            .search(
                None,
                SearchInput {
                    q: Some("creme".into()),
                    ..SearchInput::default()
                },
            )
            .await
            .unwrap();
        assert!(
            creme.page.items.iter().all(|p| p.name.contains("Crème")),
            "accent-folded search"
        );
    }
}
