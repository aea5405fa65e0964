//! Tests specific to the PostgreSQL checkout adapter: what the shared conformance suite
//! (`tests/conformance.rs`) cannot see. Real concurrency over many connections (no oversell, no
//! deadlock, one winner per compare-and-set), the schema and its migration, database-level
//! fences (CHECK constraints, append-only logs), and behaviour independent of server settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use commerce_core::Error;
use commerce_core::conformance::new_customer as customer;
use commerce_core::domain::{
    Actor, AddressFields, Attributes, CartId, Coupon, Currency, Discount, IdempotencyClaim, IdempotencyKey, Money,
    MovementKind, Order, OrderEvent, OrderEventId, OrderId, OrderItem, OrderItemId, OrderStatus, OrderTotals,
    PageRequest, ProductId, Quantity, SagaRecord, SagaStep, Sku, StockChange, StockSet, StockSettings, UserId,
};
use commerce_core::ports::{IdempotencyStore, InventoryStore, NewOrder, OrderStore, OrderTransition, StockEffect};
use commerce_pg::PgStore;
use sqlx::Connection;
use sqlx::postgres::PgPoolOptions;
use support::fresh_store;
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn usd(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::USD)
}

fn new_sku(tag: &str) -> Sku {
    Sku::parse(&format!("{tag}-{}", &Uuid::now_v7().simple().to_string()[20..])).unwrap()
}

async fn stock(store: &PgStore, sku: &Sku, warehouse: &str, on_hand: i64) {
    store
        .change_stock(
            sku,
            warehouse,
            &StockChange::SetOnHand(on_hand),
            &Actor::System,
            None,
            now(),
        )
        .await
        .unwrap();
}

/// An order of `(sku, quantity)` lines, in the given line order.
fn order(user: UserId, lines: &[(&Sku, i64)], coupon: Option<&str>) -> NewOrder {
    let at = now();
    let items: Vec<OrderItem> = lines
        .iter()
        .map(|&(sku, quantity)| OrderItem {
            id: OrderItemId::new(),
            product_id: ProductId::new(),
            sku: sku.clone(),
            name: format!("Item {sku}"),
            options: Attributes::new(),
            unit_price: usd(1_000),
            quantity: Quantity::new(quantity).unwrap(),
            line_total: usd(1_000 * quantity),
        })
        .collect();
    let subtotal: i64 = items.iter().map(|i| i.line_total.amount_minor).sum();
    let (order_id, cart_id) = (OrderId::new(), CartId::new());
    NewOrder {
        order: Order {
            id: order_id,
            user_id: user,
            cart_id: Some(cart_id),
            status: OrderStatus::Pending,
            items,
            totals: OrderTotals {
                subtotal: usd(subtotal),
                shipping: usd(0),
                tax: usd(0),
                discount: usd(0),
                total: usd(subtotal),
            },
            coupon_code: coupon.map(str::to_owned),
            shipping_address: AddressFields {
                first_name: "Grace".to_owned(),
                last_name: "Hopper".to_owned(),
                line1: "1 Navy Way".to_owned(),
                city: "Arlington".to_owned(),
                postal_code: "22202".to_owned(),
                country: "US".to_owned(),
                ..AddressFields::default()
            },
            tracking: None,
            payment_due_by: at + Duration::minutes(30),
            created_at: at,
            updated_at: at,
        },
        event: OrderEvent {
            id: OrderEventId::new(),
            order_id,
            from: None,
            to: OrderStatus::Pending,
            actor: Actor::User(user),
            note: None,
            at,
        },
        saga: SagaRecord {
            order_id,
            cart_id,
            step: SagaStep::OrderPlaced,
            updated_at: at,
        },
        coupon: coupon.map(str::to_owned),
        answer: None,
    }
}

fn transition(order: OrderId, from: OrderStatus, to: OrderStatus, stock: StockEffect) -> OrderTransition {
    OrderTransition {
        order_id: order,
        from,
        to,
        event: OrderEvent {
            id: OrderEventId::new(),
            order_id: order,
            from: Some(from),
            to,
            actor: Actor::System,
            note: None,
            at: now(),
        },
        stock,
        tracking: None,
        saga_step: None,
    }
}

/// A second store on the same database with a pool wide enough for real contention (the test
/// store's pool has 5 connections).
async fn wide(store: &PgStore, connections: u32) -> PgStore {
    let options = (*store.pool().connect_options()).clone();
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(StdDuration::from_secs(60))
        .connect_with(options)
        .await
        .unwrap();
    PgStore::new(pool)
}

/// Deadlocks PostgreSQL has detected in this database so far.
async fn deadlocks(store: &PgStore) -> i64 {
    let mut conn = store.pool().acquire().await.unwrap();
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(&mut *conn)
        .await
        .unwrap()
}

/// Closes a wide store's connections, so their backends report their statistics (deadlocks
/// included) as they exit.
async fn close(wide: PgStore) {
    // The store keeps connections leased between statements: dropped first, it gives them back.
    let pool = wide.pool().clone();
    drop(wide);
    pool.close().await;
    tokio::time::sleep(StdDuration::from_millis(500)).await;
}

/// Runs the tasks at once (released together by a barrier) on the multi-threaded runtime.
async fn race<T, F, Fut>(n: usize, make: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let task = make(i);
            tokio::spawn(async move {
                barrier.wait().await;
                task.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

/// `(on_hand, reserved)` per warehouse.
async fn quantities(store: &PgStore, sku: &Sku) -> BTreeMap<String, (i64, i64)> {
    store
        .stock_levels(sku)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.warehouse, (l.on_hand, l.reserved)))
        .collect()
}

/// Units held by active reservations, per (sku, warehouse), straight from the table.
async fn active_reservations(store: &PgStore) -> BTreeMap<(String, String), i64> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT sku, warehouse, SUM(quantity)::bigint FROM commerce.reservations
          WHERE status = 'active' GROUP BY sku, warehouse",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    rows.into_iter().map(|(s, w, n)| ((s, w), n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_orders_for_fifty_units_sell_exactly_fifty() {
    let store = fresh_store().await;
    let user = customer(&store).await;
    let sku = new_sku("HOT");
    stock(&store, &sku, "main", 50).await;
    let deadlocks_before = deadlocks(&store).await;
    let racers = Arc::new(wide(&store, 24).await);

    let orders: Arc<Vec<NewOrder>> = Arc::new((0..200).map(|_| order(user, &[(&sku, 1)], None)).collect());
    let results = race(200, |i| {
        let (racers, orders) = (Arc::clone(&racers), Arc::clone(&orders));
        async move { racers.place_order(&orders[i]).await }
    })
    .await;

    let mut placed = BTreeSet::new();
    for (new, result) in orders.iter().zip(results) {
        match result {
            Ok(o) => {
                placed.insert(o.id);
            }
            Err(Error::OutOfStock {
                sku: s,
                requested,
                available,
            }) => {
                assert_eq!((s.as_str(), requested, available), (sku.as_str(), 1, 0));
                assert!(store.get_order(new.order.id).await.unwrap_err().is_not_found());
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(placed.len(), 50, "exactly 50 of 200 one-unit orders fit 50 units");
    assert_eq!(
        quantities(&store, &sku).await,
        BTreeMap::from([("main".to_owned(), (50, 50))]),
        "on hand unchanged, 50 reserved"
    );
    let stored: BTreeSet<OrderId> = store
        .list_orders(None, PageRequest::new(1, 100).unwrap())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(stored, placed, "every placed order stored, no refused one");
    let sagas: BTreeSet<OrderId> = store
        .unfinished_sagas()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.order_id)
        .collect();
    assert_eq!(sagas, placed, "one saga row per placed order");

    // The reservations were taken one after the other: each saw the previous one.
    let log = store.movements(&sku, PageRequest::new(1, 100).unwrap()).await.unwrap();
    let mut reserved_before: Vec<i64> = log
        .items
        .iter()
        .filter(|m| m.kind == MovementKind::Reservation)
        .inspect(|m| assert_eq!((m.on_hand_before, m.on_hand_after), (50, 50)))
        .inspect(|m| assert_eq!(m.reserved_after, m.reserved_before + 1))
        .map(|m| m.reserved_before)
        .collect();
    reserved_before.sort_unstable();
    assert_eq!(
        reserved_before,
        (0..50).collect::<Vec<_>>(),
        "a serial chain of reservations"
    );

    close(Arc::into_inner(racers).unwrap()).await;
    assert_eq!(deadlocks(&store).await, deadlocks_before, "no deadlock was detected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crossed_multi_sku_orders_transfers_and_restocks_never_deadlock_or_oversell() {
    let store = fresh_store().await;
    let user = customer(&store).await;
    let skus = [new_sku("A"), new_sku("B"), new_sku("C")];
    let warehouses = ["east", "main", "west"];
    for sku in &skus {
        for wh in warehouses {
            stock(&store, sku, wh, 20).await;
        }
    }
    let deadlocks_before = deadlocks(&store).await;
    let racers = Arc::new(wide(&store, 24).await);
    let skus = Arc::new(skus);

    // Orders with their lines in every order (A,B,C / C,B,A / B,A ...), transfers in both
    // directions and stock receipts, all at once.
    let outcomes = race(240, |i| {
        let (racers, skus) = (Arc::clone(&racers), Arc::clone(&skus));
        async move {
            let (a, b, c) = (&skus[i % 3], &skus[(i + 1) % 3], &skus[(i + 2) % 3]);
            match i % 4 {
                0 | 1 => {
                    let lines: Vec<(&Sku, i64)> = if i % 8 < 4 {
                        vec![(a, 2), (b, 3), (c, 1)]
                    } else {
                        vec![(c, 1), (a, 2)]
                    };
                    let new = order(user, &lines, None);
                    racers.place_order(&new).await.map(|_| "placed")
                }
                2 => {
                    // Every ordered pair of warehouses, both directions.
                    let (from, to) = (warehouses[(i / 4) % 3], warehouses[(i / 4 + 1 + (i / 12) % 2) % 3]);
                    let qty = Quantity::new(i64::try_from(i % 5 + 1).unwrap()).unwrap();
                    racers
                        .transfer_stock(a, from, to, qty, &Actor::System, now())
                        .await
                        .map(|_| "transferred")
                }
                _ => {
                    let receipt = StockChange::Adjust {
                        delta: 1,
                        kind: MovementKind::Purchase,
                    };
                    racers
                        .change_stock(a, warehouses[i % 3], &receipt, &Actor::System, None, now())
                        .await
                        .map(|_| "received")
                }
            }
        }
    })
    .await;

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in outcomes {
        match outcome {
            Ok(what) => *counts.entry(what).or_default() += 1,
            Err(Error::OutOfStock { .. }) => *counts.entry("out of stock").or_default() += 1,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(counts.get("received"), Some(&60), "every receipt applied: {counts:?}");
    assert!(
        counts.get("placed").is_some_and(|n| *n > 0),
        "some orders placed: {counts:?}"
    );

    // Every unit is accounted for: on hand is the initial stock plus receipts (transfers only
    // move it), reserved is exactly what active reservations hold, nothing oversold.
    let held = active_reservations(&store).await;
    let mut on_hand_total = 0;
    for sku in skus.iter() {
        for level in store.stock_levels(sku).await.unwrap() {
            assert!(level.available() >= 0, "oversold: {level:?}");
            assert!(level.on_hand >= 0 && level.reserved >= 0, "negative: {level:?}");
            let key = (sku.to_string(), level.warehouse.clone());
            assert_eq!(
                level.reserved,
                held.get(&key).copied().unwrap_or(0),
                "reserved matches the active reservations of {key:?}"
            );
            on_hand_total += level.on_hand;
        }
    }
    assert_eq!(
        on_hand_total,
        3 * 3 * 20 + 60,
        "transfers conserve stock; receipts add to it"
    );

    close(Arc::into_inner(racers).unwrap()).await;
    assert_eq!(deadlocks(&store).await, deadlocks_before, "no deadlock was detected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_in_both_directions_conserve_stock() {
    let store = fresh_store().await;
    let sku = new_sku("MOVE");
    for wh in ["a", "b", "c"] {
        stock(&store, &sku, wh, 30).await;
    }
    let deadlocks_before = deadlocks(&store).await;
    let racers = Arc::new(wide(&store, 24).await);
    let pairs = [("a", "b"), ("b", "a"), ("b", "c"), ("c", "b"), ("c", "a"), ("a", "c")];
    let results = race(150, |i| {
        let (racers, sku) = (Arc::clone(&racers), sku.clone());
        let (from, to) = pairs[i % pairs.len()];
        let qty = Quantity::new(i64::try_from(i % 4 + 1).unwrap()).unwrap();
        async move { racers.transfer_stock(&sku, from, to, qty, &Actor::System, now()).await }
    })
    .await;
    let mut moved = 0;
    for result in results {
        match result {
            Ok((from, to)) => {
                assert!(from.on_hand >= 0 && to.on_hand > 0, "{from:?} -> {to:?}");
                moved += 1;
            }
            Err(Error::OutOfStock { available, .. }) => assert!(available >= 0),
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    let levels = quantities(&store, &sku).await;
    assert_eq!(
        levels.values().map(|(on_hand, _)| on_hand).sum::<i64>(),
        90,
        "{levels:?}"
    );
    assert!(levels.values().all(|(on_hand, _)| *on_hand >= 0), "{levels:?}");
    let log = store.movements(&sku, PageRequest::new(1, 1).unwrap()).await.unwrap();
    assert_eq!(
        log.total,
        3 + 2 * moved,
        "two movements per transfer (plus the initial counts)"
    );
    close(Arc::into_inner(racers).unwrap()).await;
    assert_eq!(deadlocks(&store).await, deadlocks_before, "no deadlock was detected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_transitions_of_one_order_have_one_winner_and_one_stock_effect() {
    let store = fresh_store().await;
    let user = customer(&store).await;
    let sku = new_sku("RACE");
    stock(&store, &sku, "main", 10).await;
    let racers = Arc::new(wide(&store, 12).await);
    for round in 0..5 {
        let placed = store.place_order(&order(user, &[(&sku, 3)], None)).await.unwrap();
        let results = race(10, |i| {
            let racers = Arc::clone(&racers);
            let t = if i % 2 == 0 {
                transition(
                    placed.id,
                    OrderStatus::Pending,
                    OrderStatus::Processing,
                    StockEffect::Commit,
                )
            } else {
                transition(
                    placed.id,
                    OrderStatus::Pending,
                    OrderStatus::Cancelled,
                    StockEffect::Release,
                )
            };
            async move { racers.transition_order(&t).await }
        })
        .await;
        let winners: Vec<Order> = results.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
        assert_eq!(winners.len(), 1, "round {round}: one winner");
        let status = winners[0].status;
        for result in results.into_iter().filter(Result::is_err) {
            match result {
                Err(Error::InvalidTransition { from, .. }) => assert_eq!(from, status.as_str()),
                other => panic!("round {round}: expected InvalidTransition, got {other:?}"),
            }
        }
        let events = store.order_events(placed.id).await.unwrap();
        assert_eq!(events.len(), 2, "round {round}: creation and the winning move only");
        let (on_hand, reserved) = quantities(&store, &sku).await["main"];
        assert_eq!(
            reserved, 0,
            "round {round}: reservation committed or released exactly once"
        );
        // Each processing winner sold 3 units; cancellations gave them back.
        assert!(
            on_hand <= 10 && (10 - on_hand) % 3 == 0,
            "round {round}: on hand {on_hand}"
        );
        if on_hand < 3 {
            stock(&store, &sku, "main", 10).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_key_reclaimed_concurrently_has_one_winner() {
    let store = fresh_store().await;
    let racers = Arc::new(wide(&store, 10).await);
    let key = IdempotencyKey {
        scope: format!("user-{}:POST /api/v1/orders", Uuid::now_v7()),
        key: "retry-me".to_owned(),
    };
    let t0 = now();
    let claim = store
        .claim_key(&key, "fp-old", t0, t0 + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(claim, IdempotencyClaim::Started);
    let later = t0 + Duration::seconds(5);
    let claims = race(10, |_| {
        let (racers, key) = (Arc::clone(&racers), key.clone());
        async move {
            racers
                .claim_key(&key, "fp-new", later, later + Duration::hours(24))
                .await
        }
    })
    .await;
    let claims: Vec<IdempotencyClaim> = claims.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        claims.iter().filter(|c| **c == IdempotencyClaim::Started).count(),
        1,
        "one claim replaces the expired record: {claims:?}"
    );
    assert!(
        claims
            .iter()
            .all(|c| matches!(c, IdempotencyClaim::Started | IdempotencyClaim::InFlight)),
        "the others see the new claim running: {claims:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkout_runs_at_read_committed_whatever_the_server_default() {
    let store = fresh_store().await;
    let user = customer(&store).await;
    let sku = new_sku("ISO");
    stock(&store, &sku, "main", 20).await;
    // Connections whose default isolation is SERIALIZABLE, as an embedder's server might be set.
    let options = (*store.pool().connect_options())
        .clone()
        .options([("default_transaction_isolation", "serializable")]);
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(StdDuration::from_secs(60))
        .connect_with(options)
        .await
        .unwrap();
    let level: String = sqlx::query_scalar("SHOW default_transaction_isolation")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(level, "serializable");
    let racers = Arc::new(PgStore::new(pool));
    let results = race(60, |_| {
        let racers = Arc::clone(&racers);
        let new = order(user, &[(&sku, 1)], None);
        async move { racers.place_order(&new).await }
    })
    .await;
    let placed = results.iter().filter(|r| r.is_ok()).count();
    for result in &results {
        assert!(
            matches!(result, Ok(_) | Err(Error::OutOfStock { .. })),
            "no serialization failure may surface: {result:?}"
        );
    }
    assert_eq!(placed, 20);
    assert_eq!(quantities(&store, &sku).await["main"], (20, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deadlock_with_an_embedders_transaction_is_retried() {
    let store = Arc::new(fresh_store().await);
    let user = customer(store.as_ref()).await;
    let (a, b) = (new_sku("A"), new_sku("B"));
    stock(&store, &a, "main", 5).await;
    stock(&store, &b, "main", 5).await;
    let touch = "UPDATE commerce.stock_levels SET reorder_point = reorder_point + 1 WHERE sku = $1";

    // An embedder's transaction holds B ...
    let options = (*store.pool().connect_options()).clone();
    let mut theirs = sqlx::PgConnection::connect_with(&options).await.unwrap();
    // (Waiting longer before checking for deadlocks, so the checkout is the one aborted.)
    sqlx::raw_sql("SET deadlock_timeout = '10s'")
        .execute(&mut theirs)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut theirs).await.unwrap();
    sqlx::query(touch).bind(b.as_str()).execute(&mut theirs).await.unwrap();

    // ... the checkout locks A, then waits for B ...
    let new = order(user, &[(&a, 1), (&b, 1)], None);
    let checkout = {
        let (store, new) = (Arc::clone(&store), new.clone());
        tokio::spawn(async move { store.place_order(&new).await })
    };
    let waiting =
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    for _ in 0..200 {
        let n: i64 = sqlx::query_scalar(waiting).fetch_one(store.pool()).await.unwrap();
        if n > 0 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }

    // ... and the embedder's transaction now wants A: a deadlock. PostgreSQL aborts the
    // checkout's transaction (its check runs first), which lets this update through.
    sqlx::query(touch).bind(a.as_str()).execute(&mut theirs).await.unwrap();
    sqlx::raw_sql("COMMIT").execute(&mut theirs).await.unwrap();

    // The checkout could not have committed before (it was waiting for B), so it succeeding now
    // means it was aborted and run again.
    let placed = checkout
        .await
        .unwrap()
        .expect("the checkout is retried after the deadlock");
    assert_eq!(placed, new.order);
    assert_eq!(quantities(&store, &a).await["main"], (5, 1));
    assert_eq!(quantities(&store, &b).await["main"], (5, 1));
    let levels = store.stock_levels(&a).await.unwrap();
    assert_eq!(levels[0].reorder_point, 1, "the embedder's transaction committed");
    assert_eq!(store.order_events(new.order.id).await.unwrap().len(), 1, "written once");
}

/// Starts a transaction of its own on `store`'s database that changes `sku`'s level in
/// `warehouse` by `on_hand` units and keeps it locked until [`commit_when_waited_for`].
async fn hold_level_change(store: &PgStore, sku: &Sku, warehouse: &str, on_hand: i64) -> sqlx::PgConnection {
    let options = (*store.pool().connect_options()).clone();
    let mut theirs = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut theirs).await.unwrap();
    sqlx::query("UPDATE commerce.stock_levels SET on_hand = on_hand + $3 WHERE sku = $1 AND warehouse = $2")
        .bind(sku.as_str())
        .bind(warehouse)
        .bind(on_hand)
        .execute(&mut theirs)
        .await
        .unwrap();
    theirs
}

/// Commits `theirs` once another connection to the database waits for a lock (the checkout's
/// statement, waiting for the level `theirs` changed).
async fn commit_when_waited_for(store: &PgStore, mut theirs: sqlx::PgConnection) {
    let waiting =
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let mut waited = false;
    for _ in 0..500 {
        let n: i64 = sqlx::query_scalar(waiting).fetch_one(store.pool()).await.unwrap();
        if n > 0 {
            waited = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    assert!(waited, "the checkout never waited for the level held");
    sqlx::raw_sql("COMMIT").execute(&mut theirs).await.unwrap();
}

/// Places `new` while another transaction changes `sku`'s level in `warehouse` by `on_hand`
/// units: changed (and locked) before the order's statement begins, committed once that
/// statement waits for the level.
async fn place_while_level_changes(
    store: &Arc<PgStore>,
    new: &NewOrder,
    sku: &Sku,
    warehouse: &str,
    on_hand: i64,
) -> commerce_core::Result<Order> {
    let theirs = hold_level_change(store, sku, warehouse, on_hand).await;
    let checkout = {
        let (store, new) = (Arc::clone(store), new.clone());
        tokio::spawn(async move { store.place_order(&new).await })
    };
    commit_when_waited_for(store, theirs).await;
    checkout.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_level_changed_while_the_order_waits_for_it_is_reserved_as_changed() {
    let store = Arc::new(fresh_store().await);
    let user = customer(store.as_ref()).await;
    let sku = new_sku("WAIT");
    stock(&store, &sku, "a-east", 1).await;
    stock(&store, &sku, "b-west", 5).await;
    // When the order's statement began, two units would come one from each warehouse. a-east
    // gets 5 more before the statement can lock it: both come from a-east, and the movement
    // shows the level as locked, not as the statement first saw it.
    let new = order(user, &[(&sku, 2)], None);
    let placed = place_while_level_changes(&store, &new, &sku, "a-east", 5)
        .await
        .unwrap();
    assert_eq!(placed, new.order);
    assert_eq!(quantities(&store, &sku).await["a-east"], (6, 2));
    assert_eq!(quantities(&store, &sku).await["b-west"], (5, 0));
    let held = active_reservations(&store).await;
    assert_eq!(held.get(&(sku.to_string(), "a-east".to_owned())), Some(&2));
    assert_eq!(held.get(&(sku.to_string(), "b-west".to_owned())), None);
    assert_eq!(
        order_movements(&store, new.order.id).await,
        vec![("a-east".to_owned(), 6, 6, 0, 2)],
        "one movement, from the level as locked"
    );
    assert_eq!(store.order_events(new.order.id).await.unwrap().len(), 1, "written once");
}

/// (warehouse, on hand before, after, reserved before, after) of the order's movements, in
/// log order.
async fn order_movements(store: &PgStore, order: OrderId) -> Vec<(String, i64, i64, i64, i64)> {
    sqlx::query_as(
        "SELECT warehouse, on_hand_before, on_hand_after, reserved_before, reserved_after
           FROM commerce.stock_movements WHERE order_id = $1 ORDER BY seq",
    )
    .bind(order.0)
    .fetch_all(store.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn lines_of_one_sku_chain_their_movements_and_fill_warehouses_in_order() {
    let store = fresh_store().await;
    let user = customer(&store).await;
    let sku = new_sku("TWO");
    stock(&store, &sku, "a", 4).await;
    stock(&store, &sku, "b", 10).await;
    let other = new_sku("ONE");
    stock(&store, &other, "main", 1).await;
    // a holds every unit of the first order: both lines from a, each movement after the last.
    let first = order(user, &[(&sku, 1), (&other, 1), (&sku, 3)], None);
    store.place_order(&first).await.unwrap();
    assert_eq!(
        order_movements(&store, first.order.id).await,
        vec![
            ("a".to_owned(), 4, 4, 0, 1),
            ("main".to_owned(), 1, 1, 0, 1),
            ("a".to_owned(), 4, 4, 1, 4),
        ]
    );
    // a has nothing left: the next order's lines come from b, in line order.
    let second = order(user, &[(&sku, 2), (&sku, 5)], None);
    store.place_order(&second).await.unwrap();
    assert_eq!(
        order_movements(&store, second.order.id).await,
        vec![("b".to_owned(), 10, 10, 0, 2), ("b".to_owned(), 10, 10, 2, 7)]
    );
    // Spread over both: 1 from a after a restock, the rest from b.
    stock(&store, &sku, "a", 5).await;
    let third = order(user, &[(&sku, 3)], None);
    store.place_order(&third).await.unwrap();
    assert_eq!(
        order_movements(&store, third.order.id).await,
        vec![("a".to_owned(), 5, 5, 4, 5), ("b".to_owned(), 10, 10, 7, 9)]
    );
    let positions: Vec<(i32, String, i32)> = sqlx::query_as(
        "SELECT position, warehouse, quantity FROM commerce.reservations WHERE order_id = $1 ORDER BY position",
    )
    .bind(first.order.id.0)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        positions,
        vec![
            (0, "a".to_owned(), 1),
            (1, "main".to_owned(), 1),
            (2, "a".to_owned(), 3)
        ]
    );
    assert_eq!(quantities(&store, &sku).await["a"], (5, 5));
    assert_eq!(quantities(&store, &sku).await["b"], (10, 9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_gone_while_the_order_waits_is_out_of_stock_and_writes_nothing() {
    let store = Arc::new(fresh_store().await);
    let user = customer(store.as_ref()).await;
    let sku = new_sku("GONE");
    stock(&store, &sku, "main", 3).await;
    // Enough when the order's statement began; two of the three units gone before it locks the
    // level.
    let new = order(user, &[(&sku, 2)], None);
    let err = place_while_level_changes(&store, &new, &sku, "main", -2)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::OutOfStock {
                requested: 2,
                available: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(quantities(&store, &sku).await["main"], (1, 0));
    assert!(matches!(
        store.get_order(new.order.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(active_reservations(&store).await.is_empty());
    let rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM commerce.order_items) + (SELECT COUNT(*) FROM commerce.order_events)
              + (SELECT COUNT(*) FROM commerce.checkout_sagas) + (SELECT COUNT(*) FROM commerce.stock_movements
                 WHERE order_id IS NOT NULL)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(rows, 0, "nothing of the order half-written");
}

#[tokio::test]
async fn an_unknown_coupon_is_not_found_and_writes_nothing() {
    let store = fresh_store().await;
    let user = customer(&store).await;
    let sku = new_sku("CPN");
    stock(&store, &sku, "main", 5).await;
    let new = order(user, &[(&sku, 2)], Some("NO-SUCH-CODE"));
    assert!(matches!(
        store.place_order(&new).await,
        Err(Error::NotFound { entity: "coupon" })
    ));
    assert!(store.get_order(new.order.id).await.unwrap_err().is_not_found());
    assert_eq!(quantities(&store, &sku).await["main"], (5, 0));

    let code = Coupon {
        code: format!("ONCE-{}", Uuid::now_v7().simple()).to_uppercase(),
        discount: Discount::Fixed(usd(500)),
        min_subtotal: None,
        expires_at: None,
        usage_limit: Some(1),
        per_customer_limit: None,
        times_used: 0,
        active: true,
    };
    store.insert_coupon(&code).await.unwrap();
    assert_eq!(store.find_coupon(&code.code).await.unwrap(), Some(code.clone()));
    store
        .place_order(&order(user, &[(&sku, 1)], Some(&code.code)))
        .await
        .unwrap();
    // Short of stock and out of uses: the stock is checked first, as in the in-memory adapter.
    let both = order(user, &[(&sku, 9)], Some(&code.code));
    assert!(matches!(store.place_order(&both).await, Err(Error::OutOfStock { .. })));
}

#[tokio::test]
async fn an_order_mixing_currencies_is_refused() {
    let store = fresh_store().await;
    let user = customer(&store).await;
    let sku = new_sku("FX");
    stock(&store, &sku, "main", 5).await;
    let mut new = order(user, &[(&sku, 1)], None);
    new.order.items[0].unit_price = Money::new(1_000, Currency::EUR);
    match store.place_order(&new).await {
        Err(Error::Validation(errors)) => assert_eq!(errors[0].field, "currency"),
        other => panic!("expected Validation on currency, got {other:?}"),
    }
    assert_eq!(quantities(&store, &sku).await["main"], (5, 0));
}

#[tokio::test]
async fn warehouses_and_skus_sort_bytewise_like_the_core() {
    let store = fresh_store().await;
    let user = customer(&store).await;
    let sku = new_sku("ORD");
    // Byte order: upper case before '_' before lower case (a linguistic collation would differ).
    for wh in ["b", "_x", "B"] {
        stock(&store, &sku, wh, 1).await;
    }
    let order_of = |levels: BTreeMap<String, (i64, i64)>| levels.into_keys().collect::<Vec<_>>();
    let listed: Vec<String> = store
        .stock_levels(&sku)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.warehouse)
        .collect();
    assert_eq!(listed, vec!["B", "_x", "b"]);
    store.place_order(&order(user, &[(&sku, 2)], None)).await.unwrap();
    let levels = quantities(&store, &sku).await;
    assert_eq!(order_of(levels.clone()), vec!["B", "_x", "b"]);
    assert_eq!(
        (levels["B"].1, levels["_x"].1, levels["b"].1),
        (1, 1, 0),
        "reserved in byte order"
    );
    // An order the first warehouse covers alone (written at once) takes it from "B" too.
    let ample = new_sku("ORD");
    for wh in ["b", "_x", "B"] {
        stock(&store, &ample, wh, 5).await;
    }
    store.place_order(&order(user, &[(&ample, 3)], None)).await.unwrap();
    let levels = quantities(&store, &ample).await;
    assert_eq!(
        (levels["B"].1, levels["_x"].1, levels["b"].1),
        (3, 0, 0),
        "the first warehouse in byte order"
    );
}

#[tokio::test]
async fn the_database_fences_stock_and_keeps_logs_append_only() {
    let store = fresh_store().await;
    let user = customer(&store).await;
    let sku = new_sku("FENCE");
    stock(&store, &sku, "main", 5).await;
    let placed = store.place_order(&order(user, &[(&sku, 2)], None)).await.unwrap();

    let negative = sqlx::query("UPDATE commerce.stock_levels SET reserved = -1 WHERE sku = $1")
        .bind(sku.as_str())
        .execute(store.pool())
        .await
        .unwrap_err();
    // The rule is the column's domain's (migration 0006).
    assert_eq!(
        negative.as_database_error().and_then(|e| e.constraint()),
        Some("reserved_units_check")
    );
    for statement in [
        "UPDATE commerce.stock_movements SET on_hand_after = 0 WHERE sku = $1",
        "DELETE FROM commerce.stock_movements WHERE sku = $1",
    ] {
        let err = sqlx::query(statement)
            .bind(sku.as_str())
            .execute(store.pool())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{statement}: {err}");
    }
    let err = sqlx::query("DELETE FROM commerce.order_events WHERE order_id = $1")
        .bind(placed.id.0)
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    assert_eq!(store.order_events(placed.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_columns_domains_refuse_what_their_checks_did() {
    let store = fresh_store().await;
    let user = customer(&store).await;
    let sku = new_sku("DOMAIN");
    stock(&store, &sku, "main", 5).await;
    let placed = store.place_order(&order(user, &[(&sku, 2)], None)).await.unwrap();
    let id = placed.id.0;
    for (statement, domain) in [
        (
            "UPDATE commerce.orders SET status = 'lost' WHERE id = $1",
            "order_status_check",
        ),
        (
            "UPDATE commerce.orders SET currency = 'usd' WHERE id = $1",
            "currency_code_check",
        ),
        (
            "UPDATE commerce.orders SET shipping_address = '[]' WHERE id = $1",
            "json_object_check",
        ),
        (
            "UPDATE commerce.order_items SET quantity = 0 WHERE order_id = $1",
            "line_quantity_check",
        ),
        (
            "UPDATE commerce.order_items SET options = '\"red\"' WHERE order_id = $1",
            "json_object_check",
        ),
        (
            "UPDATE commerce.checkout_sagas SET step = 'halfway' WHERE order_id = $1",
            "saga_step_check",
        ),
        (
            "UPDATE commerce.reservations SET status = 'lost' WHERE order_id = $1",
            "reservation_status_check",
        ),
        (
            "UPDATE commerce.reservations SET quantity = 0 WHERE order_id = $1",
            "reserved_quantity_check",
        ),
        (
            "INSERT INTO commerce.stock_levels (sku, warehouse, on_hand, reserved, updated_at)
             SELECT 'lower case', 'main', 0, 0, now() FROM commerce.orders WHERE id = $1",
            "stock_sku_check",
        ),
    ] {
        let err = sqlx::query(statement).bind(id).execute(store.pool()).await.unwrap_err();
        assert_eq!(
            err.as_database_error().and_then(|e| e.constraint()),
            Some(domain),
            "{statement}: {err}"
        );
    }
    // What the checkout wrote is untouched, and reads back through the domains' base types.
    let read = store.get_order(placed.id).await.unwrap();
    assert_eq!(
        (read.status, read.items[0].quantity),
        (placed.status, placed.items[0].quantity)
    );
}

#[tokio::test]
async fn settings_and_backorders_round_trip() {
    let store = fresh_store().await;
    let user = customer(&store).await;
    let sku = new_sku("BACK");
    stock(&store, &sku, "main", 2).await;
    let settings = StockSettings {
        low_stock_threshold: Some(1),
        reorder_point: Some(4),
        backorder_allowed: Some(true),
    };
    let set = StockSet::settings_only(sku.clone(), "main", settings);
    store.set_stock_levels(&[set], &Actor::System, now()).await.unwrap();
    let placed = store.place_order(&order(user, &[(&sku, 5)], None)).await.unwrap();
    assert_eq!(
        quantities(&store, &sku).await["main"],
        (2, 5),
        "backordered beyond on hand"
    );
    store
        .transition_order(&transition(
            placed.id,
            OrderStatus::Pending,
            OrderStatus::Processing,
            StockEffect::Commit,
        ))
        .await
        .unwrap();
    // Committing a backorder takes on hand below zero, as in the in-memory adapter; receiving
    // goods is still possible.
    assert_eq!(quantities(&store, &sku).await["main"], (-3, 0));
    let receipt = StockChange::Adjust {
        delta: 1,
        kind: MovementKind::Purchase,
    };
    let level = store
        .change_stock(&sku, "main", &receipt, &Actor::System, None, now())
        .await
        .unwrap();
    assert_eq!((level.on_hand, level.reserved), (-2, 0));
    assert_eq!(
        store.skus_in_stock().await.unwrap(),
        vec![sku.clone()],
        "backorders sell"
    );
}

/// Names of the tables migration 0002 creates.
const CHECKOUT_TABLES: [&str; 13] = [
    "stock_levels",
    "stock_movements",
    "reservations",
    "orders",
    "order_items",
    "order_events",
    "checkout_sagas",
    "coupons",
    "payments",
    "payment_transactions",
    "gateway_events",
    "idempotency_keys",
    // From 0001, which 0002 references.
    "users",
];

/// `table -> comment` of the commerce schema's tables.
async fn commented_tables(store: &PgStore) -> BTreeMap<String, Option<String>> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT c.relname::text, obj_description(c.oid, 'pg_class')
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'commerce' AND c.relkind = 'r'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    rows.into_iter().collect()
}

#[tokio::test]
async fn checkout_tables_live_in_the_commerce_schema_with_comments() {
    let store = fresh_store().await;
    let tables = commented_tables(&store).await;
    for table in &CHECKOUT_TABLES[..12] {
        let comment = tables
            .get(*table)
            .unwrap_or_else(|| panic!("commerce.{table} missing: {tables:?}"));
        assert!(comment.is_some(), "commerce.{table} has no comment");
    }
    let public: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(public, 0, "the embedder's public schema is left alone");
}

#[tokio::test]
async fn migration_0002_applies_on_top_of_0001_keeping_its_data() {
    let store = fresh_store().await;
    // Back to a database that only ever saw 0001 (as one deployed before the checkout existed).
    sqlx::raw_sql("DROP SCHEMA commerce CASCADE")
        .execute(store.pool())
        .await
        .unwrap();
    commerce_pg::MIGRATOR.run_to(1, store.pool()).await.unwrap();
    let before = commented_tables(&store).await;
    assert!(
        before.contains_key("users") && !before.contains_key("orders"),
        "{before:?}"
    );
    let user = customer(&store).await;

    commerce_pg::migrate(store.pool()).await.unwrap();
    let after = commented_tables(&store).await;
    for table in CHECKOUT_TABLES {
        assert!(after.contains_key(table), "commerce.{table} missing after 0002");
    }
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM commerce._sqlx_migrations ORDER BY version")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let every: Vec<i64> = commerce_pg::MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(versions, every, "every migration applied, in order");
    assert_eq!(every.first(), Some(&1));
    // The user from before 0002 can order.
    let sku = new_sku("UPG");
    stock(&store, &sku, "main", 1).await;
    store.place_order(&order(user, &[(&sku, 1)], None)).await.unwrap();
}

#[tokio::test]
async fn migration_0002_is_idempotent() {
    let store = fresh_store().await;
    let user = customer(&store).await;
    let sku = new_sku("TWICE");
    stock(&store, &sku, "main", 3).await;
    let placed = store.place_order(&order(user, &[(&sku, 1)], None)).await.unwrap();

    // Through the migrator: nothing to do.
    commerce_pg::migrate(store.pool()).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM commerce._sqlx_migrations WHERE success")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(applied, commerce_pg::MIGRATOR.iter().count() as i64);
    // And the script itself may be run again by hand (e.g. by another tool) without harm.
    sqlx::raw_sql(include_str!("../../migrations/0002_checkout.sql"))
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(store.get_order(placed.id).await.unwrap(), placed, "data survives");
    assert_eq!(quantities(&store, &sku).await["main"], (3, 1));
}
