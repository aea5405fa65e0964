//! Tests specific to the PostgreSQL accounts adapter: where the migrations put things, how
//! database errors are translated, and behaviour under real concurrency. The port contracts
//! themselves are checked by the shared conformance suite (`tests/conformance.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use commerce_core::Error;
use commerce_core::domain::{
    Address, AddressFields, AddressId, Email, PageRequest, RefreshToken, Role, Rotation, TokenFamilyId, User,
    UserFilter, UserId, UserStatus,
};
use commerce_core::ports::{AddressStore, TokenStore, UserStore};
use commerce_pg::PgStore;
use support::fresh_store;
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn user(email: &str) -> User {
    let at = now();
    User {
        id: UserId::new(),
        email: Email::parse(email).unwrap(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        first_name: "Ada".to_owned(),
        last_name: "Lovelace".to_owned(),
        phone: None,
        role: Role::Customer,
        status: UserStatus::Active,
        created_at: at,
        updated_at: at,
    }
}

async fn insert_user(store: &PgStore, email: &str) -> User {
    let u = user(email);
    store.insert_user(&u).await.unwrap();
    u
}

fn address(user: UserId, line1: &str, is_default: bool) -> Address {
    Address {
        id: AddressId::new(),
        user_id: user,
        fields: AddressFields {
            first_name: "Ada".to_owned(),
            last_name: "Lovelace".to_owned(),
            line1: line1.to_owned(),
            city: "London".to_owned(),
            postal_code: "NW1 6XE".to_owned(),
            country: "GB".to_owned(),
            ..AddressFields::default()
        },
        is_default,
        created_at: now(),
    }
}

fn token(user: UserId, family: TokenFamilyId) -> RefreshToken {
    let at = now();
    RefreshToken {
        token_hash: format!("{}{}", Uuid::now_v7().simple(), Uuid::now_v7().simple()),
        family_id: family,
        user_id: user,
        expires_at: at + Duration::days(30),
        created_at: at,
    }
}

async fn tables_in(store: &PgStore, schema: &str) -> BTreeSet<String> {
    sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1")
        .bind(schema)
        .fetch_all(store.pool())
        .await
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn migrations_live_in_the_commerce_schema() {
    let store = fresh_store().await;
    let ours = tables_in(&store, "commerce").await;
    for table in [
        "_sqlx_migrations",
        "users",
        "addresses",
        "token_families",
        "refresh_tokens",
    ] {
        assert!(ours.contains(table), "commerce.{table} missing; have {ours:?}");
    }
    let public = tables_in(&store, "public").await;
    assert!(
        public.is_empty(),
        "the embedder's public schema must be left alone, found {public:?}"
    );
}

#[tokio::test]
async fn migrating_twice_is_a_no_op() {
    let store = fresh_store().await;
    let applied = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM commerce._sqlx_migrations WHERE success")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    let before = applied().await;
    assert_eq!(before, i64::try_from(commerce_pg::MIGRATOR.iter().count()).unwrap());
    let u = insert_user(&store, "kept@example.com").await;
    commerce_pg::migrate(store.pool()).await.expect("second migrate");
    assert_eq!(applied().await, before, "no migration applied twice");
    assert_eq!(store.get_user(u.id).await.unwrap(), u, "data survives a second migrate");
}

#[tokio::test]
async fn duplicate_email_and_id_are_conflicts_without_driver_text() {
    let store = fresh_store().await;
    let first = insert_user(&store, "Dup@Example.com").await;
    assert_eq!(first.email.as_str(), "dup@example.com");

    let mut again = user("DUP@example.COM");
    again.first_name = "Other".to_owned();
    match store.insert_user(&again).await {
        Err(Error::Conflict {
            code: "email_taken",
            message,
        }) => {
            assert_eq!(message, "an account with this email already exists");
        }
        other => panic!("expected Conflict email_taken, got {other:?}"),
    }
    let mut same_id = user("someone-else@example.com");
    same_id.id = first.id;
    assert!(
        matches!(
            store.insert_user(&same_id).await,
            Err(Error::Conflict {
                code: "user_exists",
                ..
            })
        ),
        "a duplicate id is a conflict too"
    );
    assert!(store.get_user(again.id).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn other_database_failures_are_storage_errors() {
    let store = fresh_store().await;
    // The foreign key refuses an address of an unknown user: not a domain error, so Storage.
    let orphan = address(UserId::new(), "1 Nowhere St", false);
    assert!(matches!(store.insert_address(&orphan).await, Err(Error::Storage(_))));
}

#[tokio::test]
async fn unknown_role_read_back_is_unexpected() {
    let store = fresh_store().await;
    let u = insert_user(&store, "wizard@example.com").await;
    // Only possible if someone bypasses the adapter (and the CHECK constraint).
    sqlx::query("ALTER TABLE commerce.users DROP CONSTRAINT users_role_check")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE commerce.users SET role = 'wizard' WHERE id = $1")
        .bind(u.id.0)
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.get_user(u.id).await.unwrap_err();
    assert!(matches!(err, Error::Unexpected(_)), "got {err:?}");
    assert!(
        err.to_string().contains("wizard"),
        "the message names the bad value: {err}"
    );
}

#[tokio::test]
async fn email_filter_treats_wildcards_literally() {
    let store = fresh_store().await;
    let underscore = insert_user(&store, "a_b@example.com").await;
    let _letter = insert_user(&store, "axb@example.com").await;
    let percent = insert_user(&store, "c%d@example.com").await;
    let _other = insert_user(&store, "cxxd@example.com").await;
    let page = PageRequest::default();
    for (needle, expected) in [("A_B", underscore.id), ("c%d", percent.id)] {
        let filter = UserFilter {
            email_contains: Some(needle.to_owned()),
            ..UserFilter::default()
        };
        let got = store.list_users(&filter, page).await.unwrap();
        assert_eq!(
            got.items.iter().map(|u| u.id).collect::<Vec<_>>(),
            vec![expected],
            "needle {needle:?}"
        );
        assert_eq!(got.total, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_addresses_leave_exactly_one_default() {
    let store = Arc::new(fresh_store().await);
    for round in 0..10 {
        let owner = insert_user(&store, &format!("many-homes-{round}@example.com")).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(5));
        let tasks: Vec<_> = (0..5)
            .map(|i| {
                let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                let new = address(owner.id, &format!("{i} Main St"), i % 2 == 0);
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.insert_address(&new).await
                })
            })
            .collect();
        for task in tasks {
            task.await
                .unwrap()
                .expect("no insert may fail on the one-default index");
        }
        let list = store.list_addresses(owner.id).await.unwrap();
        assert_eq!(list.len(), 5);
        assert_eq!(
            list.iter().filter(|a| a.is_default).count(),
            1,
            "round {round}: one default: {list:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotation_has_exactly_one_winner() {
    let store = Arc::new(fresh_store().await);
    let owner = insert_user(&store, "racer@example.com").await;
    for round in 0..10 {
        let family = TokenFamilyId::new();
        let presented = token(owner.id, family);
        store.insert_refresh_token(&presented).await.unwrap();
        let nexts: Vec<RefreshToken> = (0..8).map(|_| token(owner.id, TokenFamilyId::new())).collect();
        let barrier = Arc::new(tokio::sync::Barrier::new(nexts.len()));
        let tasks: Vec<_> = nexts
            .iter()
            .cloned()
            .map(|next| {
                let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                let hash = presented.token_hash.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.rotate_refresh_token(&hash, &next, now()).await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().expect("rotation must not fail"));
        }
        let rotated = outcomes
            .iter()
            .filter(|r| matches!(r, Rotation::Rotated { .. }))
            .count();
        let reused = outcomes.iter().filter(|r| matches!(r, Rotation::Reused { .. })).count();
        assert_eq!(rotated, 1, "round {round}: one winner, got {outcomes:?}");
        // The first loser sees a spent token (theft detection revokes the family); the rest
        // then see a revoked family.
        assert_eq!(reused, 1, "round {round}: one reuse, got {outcomes:?}");
        assert!(outcomes.contains(&Rotation::Rotated {
            family_id: family,
            user_id: owner.id
        }));
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM commerce.refresh_tokens WHERE family_id = $1")
            .bind(family.0)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(
            stored, 2,
            "round {round}: the presented token and the winner's next token"
        );
        for next in &nexts {
            assert_eq!(store.find_refresh_token(&next.token_hash, now()).await.unwrap(), None);
        }
    }
}

#[tokio::test]
async fn spent_and_expired_token_still_counts_as_reuse() {
    let store = fresh_store().await;
    let owner = insert_user(&store, "late-thief@example.com").await;
    let family = TokenFamilyId::new();
    let first = token(owner.id, family);
    store.insert_refresh_token(&first).await.unwrap();
    let second = token(owner.id, family);
    let t0 = now();
    assert!(matches!(
        store
            .rotate_refresh_token(&first.token_hash, &second, t0)
            .await
            .unwrap(),
        Rotation::Rotated { .. }
    ));
    let after_expiry = first.expires_at + Duration::seconds(1);
    assert_eq!(
        store
            .rotate_refresh_token(&first.token_hash, &token(owner.id, family), after_expiry)
            .await
            .unwrap(),
        Rotation::Reused {
            family_id: family,
            user_id: owner.id
        },
        "replaying a rotated token ends the session even after it expired (as the memory adapter does)"
    );
    assert_eq!(store.find_refresh_token(&second.token_hash, t0).await.unwrap(), None);
}

#[tokio::test]
async fn timestamps_keep_microseconds() {
    let store = fresh_store().await;
    let mut u = user("micro@example.com");
    u.created_at = DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap();
    u.updated_at = u.created_at;
    store.insert_user(&u).await.unwrap();
    assert_eq!(store.get_user(u.id).await.unwrap().created_at, u.created_at);
}
