//! The port conformance suite: written once, run against every storage adapter.
//!
//! Each port contract (the `# Errors` sections and the behaviour the port docs promise) is
//! checked by a generic async function that panics with a clear message when the adapter
//! breaks it. The functions are grouped by the backend that implements them:
//!
//! - [`accounts`]: [`UserStore`](crate::ports::UserStore), [`AddressStore`](crate::ports::AddressStore),
//!   [`TokenStore`](crate::ports::TokenStore);
//! - [`catalog`]: [`ProductStore`](crate::ports::ProductStore), [`CategoryStore`](crate::ports::CategoryStore),
//!   [`ReviewStore`](crate::ports::ReviewStore), [`CartStore`](crate::ports::CartStore);
//! - [`checkout`]: [`InventoryStore`](crate::ports::InventoryStore), [`OrderStore`](crate::ports::OrderStore),
//!   [`PaymentStore`](crate::ports::PaymentStore), [`IdempotencyStore`](crate::ports::IdempotencyStore)
//!   (plus [`UserStore`](crate::ports::UserStore), so orders can reference a real user where
//!   the backend enforces foreign keys).
//!
//! An adapter crate runs a whole group with one macro line in an integration test, given an
//! async factory that returns a fresh store (a fresh database per test):
//!
//! ```ignore
//! // commerce-pg/tests/conformance.rs
//! mod support; // pub async fn fresh_pg() -> commerce_pg::PgStore { ... }
//! commerce_core::accounts_conformance!(support::fresh_pg);
//! commerce_core::checkout_conformance!(support::fresh_pg);
//! ```
//!
//! Each macro expands to one `#[test]` per suite function, named like the function, that runs
//! the factory and the check on a multi-threaded Tokio runtime. The factory may be a path or a
//! closure returning a future; the store it yields is passed by reference.
//!
//! The suite makes every email, slug, SKU, coupon code and key unique, scopes searches to fresh
//! category ids, and only asserts on records it created, so it also holds when an adapter shares
//! one database between tests. Timestamps are truncated to milliseconds, the precision every
//! backend keeps (MongoDB stores milliseconds, PostgreSQL microseconds).
//!
//! Concurrency checks run their operations on separate OS threads at once (when the runtime is
//! multi-threaded, as it is under the macros), so in-memory adapters are raced for real too.

pub mod accounts;
pub mod catalog;
pub mod checkout;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use crate::Error;

pub use futures;
pub use tokio;

/// Worker threads of the runtime the generated tests run on.
pub const WORKER_THREADS: usize = 4;

/// How long one generated test may run before it is failed as hung (e.g. a deadlock).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs one conformance test on a fresh multi-threaded Tokio runtime; used by the macros.
///
/// # Panics
/// When the runtime cannot start, when the test panics, or after [`TEST_TIMEOUT`].
pub fn run<F: Future<Output = ()>>(test: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start the test runtime: {e}"));
    runtime.block_on(async {
        if tokio::time::timeout(TEST_TIMEOUT, test).await.is_err() {
            panic!("conformance test timed out after {TEST_TIMEOUT:?} (deadlock?)");
        }
    });
}

/// A boxed future borrowing the store, for [`parallel`].
pub(crate) type Task<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs the futures at the same time and returns their outputs in order.
///
/// On a multi-threaded runtime each future runs on its own OS thread, all released together by a
/// barrier, so adapters that lock in-process are raced truly in parallel; on a current-thread
/// runtime they are interleaved with `join_all`.
pub(crate) async fn parallel<'a, T: Send + 'a>(tasks: Vec<Task<'a, T>>) -> Vec<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let handle = Handle::current();
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread || tasks.len() < 2 {
        return futures::future::join_all(tasks).await;
    }
    let barrier = std::sync::Barrier::new(tasks.len());
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let threads: Vec<_> = tasks
                .into_iter()
                .map(|task| {
                    let handle = handle.clone();
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        handle.block_on(task)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        })
    })
}

/// Now, truncated to milliseconds so it survives every backend unchanged.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// A short random lower-case hex string for unique names.
pub(crate) fn unique() -> String {
    let hex = uuid::Uuid::now_v7().simple().to_string();
    // The last 12 hex digits of a UUIDv7 are random.
    hex[20..].to_owned()
}

/// A 64-hex-digit unique string, shaped like a SHA-256 hex digest.
pub(crate) fn unique_hash() -> String {
    format!("{}{}", uuid::Uuid::now_v7().simple(), uuid::Uuid::now_v7().simple())
}

/// The value of a result that must succeed.
#[track_caller]
pub(crate) fn ok<T, E: Debug>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: expected success, got error {e:?}"),
    }
}

/// Asserts `Conflict { code }`.
#[track_caller]
pub(crate) fn assert_conflict<T: Debug>(result: crate::Result<T>, code: &str, what: &str) {
    match result {
        Err(Error::Conflict { code: got, .. }) if got == code => {}
        other => panic!("{what}: expected Conflict {{ code: {code:?} }}, got {other:?}"),
    }
}

/// Asserts `NotFound { entity }`.
#[track_caller]
pub(crate) fn assert_not_found<T: Debug>(result: crate::Result<T>, entity: &str, what: &str) {
    match result {
        Err(Error::NotFound { entity: got }) if got == entity => {}
        other => panic!("{what}: expected NotFound {{ entity: {entity:?} }}, got {other:?}"),
    }
}

/// Asserts `Validation` naming `field`.
#[track_caller]
pub(crate) fn assert_validation<T: Debug>(result: crate::Result<T>, field: &str, what: &str) {
    match result {
        Err(Error::Validation(errors)) if errors.iter().any(|e| e.field == field) => {}
        other => panic!("{what}: expected Validation on field {field:?}, got {other:?}"),
    }
}

/// Asserts `OutOfStock` naming `sku` and `requested`; returns the reported `available`.
#[track_caller]
pub(crate) fn assert_out_of_stock<T: Debug>(result: crate::Result<T>, sku: &str, requested: i64, what: &str) -> i64 {
    match result {
        Err(Error::OutOfStock {
            sku: got,
            requested: r,
            available,
        }) if got == sku && r == requested => available,
        other => panic!("{what}: expected OutOfStock {{ sku: {sku:?}, requested: {requested} }}, got {other:?}"),
    }
}

/// Asserts `InvalidTransition { from, to }`.
#[track_caller]
pub(crate) fn assert_invalid_transition<T: Debug>(result: crate::Result<T>, from: &str, to: &str, what: &str) {
    match result {
        Err(Error::InvalidTransition { from: f, to: t }) if f == from && t == to => {}
        other => panic!("{what}: expected InvalidTransition {{ from: {from:?}, to: {to:?} }}, got {other:?}"),
    }
}

/// Generates the tests of one group; use the group macros instead.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_expand {
    ($group:ident [$($name:ident)*] @names) => {
        &[$(::core::stringify!($name)),*]
    };
    ($group:ident [$($name:ident)*] $factory:expr $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::run(async {
                    let store = ($factory)().await;
                    $crate::conformance::$group::$name(&store).await;
                });
            }
        )*
    };
}

/// Generates one `#[test]` per [`conformance::accounts`](crate::conformance::accounts) check
/// for the store returned by the async factory: `accounts_conformance!(support::fresh_pg);`.
/// `accounts_conformance!(@names)` is the list of test names.
#[macro_export]
macro_rules! accounts_conformance {
    ($($args:tt)+) => {
        $crate::__conformance_expand! { accounts [
            users_insert_then_get_round_trips
            users_reject_duplicate_email
            users_missing_is_not_found
            users_update_profile_applies_given_fields
            users_set_status_role_and_password
            users_list_filters_and_pages
            addresses_first_becomes_default
            addresses_new_default_replaces_old
            addresses_set_default_leaves_exactly_one
            addresses_are_scoped_to_owner
            addresses_update_replaces_fields
            addresses_delete_default_promotes_oldest
            tokens_rotate_spends_old_and_stores_next
            tokens_reuse_revokes_family
            tokens_expired_or_unknown_are_invalid
            tokens_revoke_family
            tokens_revoke_user_tokens
            tokens_concurrent_rotation_has_one_winner
        ] $($args)+ }
    };
}

/// Generates one `#[test]` per [`conformance::catalog`](crate::conformance::catalog) check
/// for the store returned by the async factory: `catalog_conformance!(support::fresh_mongo);`.
/// `catalog_conformance!(@names)` is the list of test names.
#[macro_export]
macro_rules! catalog_conformance {
    ($($args:tt)+) => {
        $crate::__conformance_expand! { catalog [
            products_insert_then_get_round_trips
            products_reject_duplicate_slug_and_sku
            products_insert_many_reports_each
            products_update_keeps_counters_and_checks_uniqueness
            products_delete
            products_find_by_skus
            products_search_matches_every_field_and_folds_text
            products_search_ranks_by_relevance
            products_search_filters
            products_search_sorts
            products_search_pages_and_facets
            products_search_listed_only
            products_search_sees_every_write
            products_recount_rating_concurrently
            products_add_sales_concurrently
            products_count_in_categories
            products_add_image_appends_and_sets_thumbnail
            products_remove_image
            categories_insert_get_and_unique_slug
            categories_list_by_sort_order_then_name
            categories_descendants_and_subtree_move
            categories_delete_refuses_parents
            reviews_one_per_user_and_product
            reviews_list_newest_first_with_total
            carts_insert_get_and_find_active
            carts_one_active_per_owner
            carts_save_is_optimistic
            carts_set_status_is_compare_and_set
            carts_expired_are_invisible_and_deleted
            carts_find_by_order
        ] $($args)+ }
    };
}

/// Generates one `#[test]` per [`conformance::checkout`](crate::conformance::checkout) check
/// for the store returned by the async factory: `checkout_conformance!(support::fresh_pg);`.
/// `checkout_conformance!(@names)` is the list of test names.
#[macro_export]
macro_rules! checkout_conformance {
    ($($args:tt)+) => {
        $crate::__conformance_expand! { checkout [
            inventory_change_stock_logs_movements
            inventory_change_stock_refuses_negative_and_below_reserved
            inventory_set_stock_levels_all_or_nothing
            inventory_transfer_stock
            inventory_available_sums_warehouses
            inventory_low_stock
            inventory_skus_in_stock
            orders_place_reserves_and_records
            orders_place_reserves_in_warehouse_name_order
            orders_out_of_stock_writes_nothing
            orders_backorder_allows_overselling
            orders_duplicate_id_is_conflict
            orders_place_stores_its_answer
            orders_concurrent_placement_never_oversells
            orders_coupon_limit_is_atomic
            orders_coupons_insert_find_and_count_uses
            orders_transition_is_compare_and_set
            orders_stock_effects
            orders_list_newest_first_scoped_to_user
            orders_sagas
            orders_overdue
            orders_has_purchased_and_counts
            payments_insert_find_and_unique
            payments_update_is_compare_and_set
            payments_gateway_events_dedupe
            idempotency_claim_lifecycle
            idempotency_release_and_expiry
        ] $($args)+ }
    };
}

/// A new active customer in `store`, for orders that must reference a real user where the
/// backend enforces foreign keys (adapters' own tests use it too).
///
/// # Panics
/// When the user cannot be inserted.
pub async fn new_customer<S: crate::ports::UserStore + ?Sized>(store: &S) -> crate::domain::UserId {
    use crate::domain::{Email, Role, User, UserId, UserStatus};
    let at = now();
    let user = User {
        id: UserId::new(),
        email: ok(Email::parse(&format!("buyer-{}@example.com", unique())), "email"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        first_name: "Grace".to_owned(),
        last_name: "Hopper".to_owned(),
        phone: None,
        role: Role::Customer,
        status: UserStatus::Active,
        created_at: at,
        updated_at: at,
    };
    ok(store.insert_user(&user).await, "insert_user");
    user.id
}
