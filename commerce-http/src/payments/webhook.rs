//! Stripe webhooks: checking the `Stripe-Signature` header and reading the event envelope.
//!
//! # Signatures
//!
//! Stripe signs every delivery as described in its "Check the webhook signatures" guide:
//!
//! ```text
//! Stripe-Signature: t=1700000000,v1=5257a869e7ec...,v1=...,v0=...
//! ```
//!
//! `t` is the Unix time of signing; each `v1` is the lower-case hex HMAC-SHA256 of the signed
//! payload `"{t}.{raw body}"`, keyed with the endpoint's signing secret — the whole `whsec_...`
//! string, as bytes, exactly as Stripe does (it is not base64-decoded). Several `v1` values
//! appear while a secret is being rolled; one matching is enough. `v0` (a legacy test-mode
//! scheme) and any unknown element are ignored. [`verify`] compares in constant time
//! (`hmac`'s `verify_slice`) and refuses a timestamp further than the tolerance from now, in
//! either direction (Stripe's libraries only refuse old ones; a future one is refused here too,
//! since a clock that far ahead means something is wrong).
//!
//! Verification must see the body exactly as received: parse it only afterwards.
//!
//! # Replays
//!
//! A captured header and body verify again for as long as the timestamp is within the
//! tolerance, and Stripe itself redelivers an event (with a new timestamp) until it is
//! acknowledged. Replay protection is therefore not this module's job: the receiver records each
//! processed event id (`processed webhook events` in PostgreSQL) and ignores an id it has seen.
//! The tolerance only bounds how long a captured delivery stays usable.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use commerce_core::domain::{Currency, Money, PaymentStatus};

use super::stripe::intent_status;

/// The header Stripe puts the signature in.
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";

/// Stripe's default tolerance: five minutes.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a webhook delivery was refused. Each is a 400 for Stripe (which then retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `Stripe-Signature` header, or an empty one.
    #[error("no Stripe-Signature header")]
    Missing,
    /// The header is not `t=<unix time>,v1=<hex>[,...]`: no or several timestamps, a
    /// timestamp that is not a non-negative integer, an element without `=`, or no `v1`.
    #[error("malformed Stripe-Signature header")]
    Malformed,
    /// The signature matches but the timestamp is further than the tolerance from now.
    #[error("Stripe-Signature timestamp outside the tolerance")]
    Stale,
    /// No `v1` signature matches the body with this secret (tampered body, wrong secret,
    /// forged header).
    #[error("no Stripe-Signature v1 signature matches")]
    Mismatch,
}

/// The HMAC of the signed payload `"{t}.{body}"`, not yet finalized.
fn keyed(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// A valid `Stripe-Signature` header for `body` signed with `secret` at Unix time `t`:
/// `t=<t>,v1=<hex>`. For tests and for the offline gateway's simulated deliveries.
pub fn sign(body: &[u8], secret: &str, t: i64) -> String {
    let signature = keyed(secret, t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(signature))
}

/// The `t` element: ASCII digits only (at most 18, so it fits any `i64` arithmetic here).
fn parse_timestamp(value: &str) -> Result<i64, SignatureError> {
    if value.is_empty() || value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed);
    }
    value.parse().map_err(|_| SignatureError::Malformed)
}

/// Checks a `Stripe-Signature` `header` against the raw `body` (see the module docs).
///
/// `tolerance_secs` is how far (either way) the signing time may be from `now_unix`;
/// [`DEFAULT_TOLERANCE_SECS`] is Stripe's. A negative tolerance counts as zero. A header that
/// verifies may still be a replay: deduplicate on the event id.
///
/// # Errors
/// [`SignatureError::Missing`], [`Malformed`](SignatureError::Malformed),
/// [`Mismatch`](SignatureError::Mismatch) (checked before the time), then
/// [`Stale`](SignatureError::Stale).
pub fn verify(
    header: &str,
    body: &[u8],
    secret: &str,
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let header = header.trim();
    if header.is_empty() {
        return Err(SignatureError::Missing);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(SignatureError::Malformed);
        };
        match key.trim() {
            "t" if timestamp.is_none() => timestamp = Some(parse_timestamp(value.trim())?),
            "t" => return Err(SignatureError::Malformed),
            "v1" => signatures.push(value.trim()),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return Err(SignatureError::Malformed);
    };
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let mac = keyed(secret, t, body);
    let matches = signatures
        .iter()
        .any(|signature| hex::decode(signature).is_ok_and(|signature| mac.clone().verify_slice(&signature).is_ok()));
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    let tolerance = u64::try_from(tolerance_secs).unwrap_or(0);
    if now_unix.abs_diff(t) > tolerance {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// The event types the payment flow acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// `payment_intent.succeeded`: the money is captured.
    PaymentIntentSucceeded,
    /// `payment_intent.payment_failed`: an attempt failed (the intent is back to
    /// `requires_payment_method`; see [`IntentObject::failure`]).
    PaymentIntentPaymentFailed,
    /// `payment_intent.canceled`.
    PaymentIntentCanceled,
    /// `charge.refunded`: some or all of a charge was refunded (see [`ChargeRefund`]).
    ChargeRefunded,
}

impl EventKind {
    /// The kind named by Stripe's `type`, if it is one of these.
    pub fn from_type(stripe_type: &str) -> Option<Self> {
        match stripe_type {
            "payment_intent.succeeded" => Some(Self::PaymentIntentSucceeded),
            "payment_intent.payment_failed" => Some(Self::PaymentIntentPaymentFailed),
            "payment_intent.canceled" => Some(Self::PaymentIntentCanceled),
            "charge.refunded" => Some(Self::ChargeRefunded),
            _ => None,
        }
    }

    /// Stripe's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentIntentSucceeded => "payment_intent.succeeded",
            Self::PaymentIntentPaymentFailed => "payment_intent.payment_failed",
            Self::PaymentIntentCanceled => "payment_intent.canceled",
            Self::ChargeRefunded => "charge.refunded",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The card a charge was paid with: all the card data this engine keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// e.g. `visa`.
    pub brand: String,
    /// Last four digits.
    pub last4: String,
}

/// Why the last payment attempt failed (`last_payment_error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFailure {
    /// Stripe's error code, e.g. `card_declined`.
    pub code: Option<String>,
    /// The issuer's reason, e.g. `insufficient_funds`.
    pub decline_code: Option<String>,
    /// Message meant for the customer, e.g. "Your card has insufficient funds."
    pub message: Option<String>,
}

/// The PaymentIntent of a `payment_intent.*` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentObject {
    /// Intent id (`pi_...`).
    pub id: String,
    /// Amount asked.
    pub amount: Money,
    /// Stripe's status, as sent (see [`IntentObject::payment_status`]).
    pub status: String,
    /// `metadata[order_id]` as set by the gateway when creating the intent. `None` for intents
    /// made by something else on the same Stripe account; not checked to be an order id.
    pub order_id: Option<String>,
    /// Id of the latest charge (`ch_...`/`py_...`), when there is one.
    pub latest_charge: Option<String>,
    /// The card of the latest charge, when `latest_charge` is an expanded charge paid by card
    /// (events carry only the charge id; API reads with `expand[]=latest_charge` carry it).
    pub card: Option<Card>,
    /// Why the last attempt failed, for `payment_intent.payment_failed`.
    pub failure: Option<PaymentFailure>,
}

impl IntentObject {
    /// [`Self::status`] in our terms ([`intent_status`]); `None` for a status this engine does
    /// not know.
    pub fn payment_status(&self) -> Option<PaymentStatus> {
        intent_status(&self.status)
    }
}

/// The Charge of a `charge.refunded` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRefund {
    /// Charge id (`ch_...`/`py_...`).
    pub charge_id: String,
    /// The PaymentIntent it belongs to (`None` only for charges made without one).
    pub intent_id: Option<String>,
    /// The charge's amount.
    pub amount: Money,
    /// All refunded from this charge so far (`amount_refunded`): a running total, not the
    /// amount of the refund that caused this event.
    pub amount_refunded: Money,
    /// Whether the whole charge is refunded (`refunded`).
    pub fully_refunded: bool,
    /// `metadata[order_id]` of the charge, when present.
    pub order_id: Option<String>,
    /// The card charged, when paid by card.
    pub card: Option<Card>,
}

/// A Stripe event, read from a verified webhook body. Unknown fields are ignored, and events of
/// any type are read (the envelope only, unless its object is one of the above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent {
    /// Event id (`evt_...`): the key to deduplicate deliveries on.
    pub id: String,
    /// Stripe's `type`, e.g. `payment_intent.succeeded` (see [`StripeEvent::known_kind`]).
    pub kind: String,
    /// When Stripe created the event (Unix time).
    pub created: i64,
    /// Whether it comes from live mode (`false` for test mode).
    pub livemode: bool,
    /// The intent, when the event's object is a PaymentIntent (`payment_intent.*`).
    pub intent: Option<IntentObject>,
    /// The refunded charge, for `charge.refunded`.
    pub refund: Option<ChargeRefund>,
}

/// A webhook body that is not a Stripe event (or whose PaymentIntent or Charge lacks a field
/// read here).
#[derive(Debug, thiserror::Error)]
#[error("not a Stripe event: {0}")]
pub struct EventError(#[source] serde_json::Error);

impl StripeEvent {
    /// Reads an event from the raw webhook body. Verify the signature first.
    ///
    /// # Errors
    /// [`EventError`] when the body is not JSON, lacks `id`, `type`, `created` or
    /// `data.object`, or its PaymentIntent/Charge lacks a field read here.
    pub fn parse(body: &[u8]) -> Result<Self, EventError> {
        let raw: RawEvent = serde_json::from_slice(body).map_err(EventError)?;
        let (intent, refund) = match raw.data.object {
            RawObject::PaymentIntent(intent) => (Some(intent.into()), None),
            RawObject::Charge(charge) if raw.kind == EventKind::ChargeRefunded.as_str() => {
                (None, Some((*charge).into()))
            }
            RawObject::Charge(_) | RawObject::Other => (None, None),
        };
        Ok(Self {
            id: raw.id,
            kind: raw.kind,
            created: raw.created,
            livemode: raw.livemode,
            intent,
            refund,
        })
    }

    /// [`Self::kind`] when it is one the payment flow acts on.
    pub fn known_kind(&self) -> Option<EventKind> {
        EventKind::from_type(&self.kind)
    }

    /// The PaymentIntent the event is about: the intent's id, or the refunded charge's.
    pub fn intent_id(&self) -> Option<&str> {
        match (&self.intent, &self.refund) {
            (Some(intent), _) => Some(&intent.id),
            (None, Some(refund)) => refund.intent_id.as_deref(),
            (None, None) => None,
        }
    }
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    #[serde(default)]
    livemode: bool,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: RawObject,
}

#[derive(Deserialize)]
#[serde(tag = "object", rename_all = "snake_case")]
enum RawObject {
    PaymentIntent(RawIntent),
    Charge(Box<RawCharge>),
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct RawMetadata {
    order_id: Option<String>,
}

#[derive(Deserialize)]
struct RawIntent {
    id: String,
    amount: i64,
    currency: Currency,
    status: String,
    metadata: Option<RawMetadata>,
    latest_charge: Option<LatestCharge>,
    last_payment_error: Option<RawPaymentError>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LatestCharge {
    Id(String),
    Expanded(Box<RawCharge>),
}

#[derive(Deserialize)]
struct RawPaymentError {
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct RawCharge {
    id: String,
    amount: i64,
    #[serde(default)]
    amount_refunded: i64,
    currency: Currency,
    payment_intent: Option<String>,
    #[serde(default)]
    refunded: bool,
    metadata: Option<RawMetadata>,
    payment_method_details: Option<RawPaymentMethodDetails>,
}

#[derive(Deserialize)]
struct RawPaymentMethodDetails {
    card: Option<RawCard>,
}

#[derive(Deserialize)]
struct RawCard {
    brand: Option<String>,
    last4: Option<String>,
}

impl RawCharge {
    fn card(&self) -> Option<Card> {
        let card = self.payment_method_details.as_ref()?.card.as_ref()?;
        Some(Card {
            brand: card.brand.clone()?,
            last4: card.last4.clone()?,
        })
    }
}

impl From<RawIntent> for IntentObject {
    fn from(raw: RawIntent) -> Self {
        let (latest_charge, card) = match raw.latest_charge {
            Some(LatestCharge::Id(id)) => (Some(id), None),
            Some(LatestCharge::Expanded(charge)) => {
                let card = charge.card();
                (Some(charge.id), card)
            }
            None => (None, None),
        };
        Self {
            id: raw.id,
            amount: Money::new(raw.amount, raw.currency),
            status: raw.status,
            order_id: raw.metadata.unwrap_or_default().order_id,
            latest_charge,
            card,
            failure: raw.last_payment_error.map(|e| PaymentFailure {
                code: e.code,
                decline_code: e.decline_code,
                message: e.message,
            }),
        }
    }
}

impl From<RawCharge> for ChargeRefund {
    fn from(raw: RawCharge) -> Self {
        let card = raw.card();
        Self {
            charge_id: raw.id,
            intent_id: raw.payment_intent,
            amount: Money::new(raw.amount, raw.currency),
            amount_refunded: Money::new(raw.amount_refunded, raw.currency),
            fully_refunded: raw.refunded,
            order_id: raw.metadata.unwrap_or_default().order_id,
            card,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_test_webhook","object":"event"}"#;

    #[test]
    fn signs_as_stripe_does() {
        // Computed independently: printf '%s' '1700000000.{body}' | openssl dgst -sha256 -hmac whsec_test_secret
        assert_eq!(
            sign(BODY, SECRET, NOW),
            "t=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
        );
    }

    #[test]
    fn accepts_a_valid_signature() {
        let header = sign(BODY, SECRET, NOW);
        assert_eq!(verify(&header, BODY, SECRET, NOW, DEFAULT_TOLERANCE_SECS), Ok(()));
        assert_eq!(verify(&header, BODY, SECRET, NOW + 300, DEFAULT_TOLERANCE_SECS), Ok(()));
        assert_eq!(verify(&header, BODY, SECRET, NOW - 300, DEFAULT_TOLERANCE_SECS), Ok(()));
        assert_eq!(verify(&format!(" {header} "), BODY, SECRET, NOW, 300), Ok(()));
    }

    #[test]
    fn accepts_any_matching_v1_among_several_and_ignores_v0() {
        let good = sign(BODY, SECRET, NOW);
        let good_v1 = good.split_once(",v1=").unwrap().1;
        let other_v1 = sign(BODY, "whsec_old_secret", NOW)
            .split_once(",v1=")
            .unwrap()
            .1
            .to_owned();
        let header = format!(
            "t={NOW},v1={other_v1},v1=not-hex,v1={good_v1},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
        );
        assert_eq!(verify(&header, BODY, SECRET, NOW, 300), Ok(()));
        let header = format!("v0=00,v1={good_v1},t={NOW},scheme=future");
        assert_eq!(verify(&header, BODY, SECRET, NOW, 300), Ok(()), "order does not matter");
        let header = format!("t={NOW},v1={other_v1},v1={}", "0".repeat(64));
        assert_eq!(verify(&header, BODY, SECRET, NOW, 300), Err(SignatureError::Mismatch));
    }

    #[test]
    fn refuses_a_tampered_body() {
        let header = sign(BODY, SECRET, NOW);
        let tampered = br#"{"id":"evt_test_webhook","object":"event" }"#;
        assert_eq!(
            verify(&header, tampered, SECRET, NOW, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(&header, b"", SECRET, NOW, 300), Err(SignatureError::Mismatch));
    }

    #[test]
    fn refuses_the_wrong_secret() {
        let header = sign(BODY, "whsec_someone_else", NOW);
        assert_eq!(verify(&header, BODY, SECRET, NOW, 300), Err(SignatureError::Mismatch));
    }

    #[test]
    fn refuses_a_moved_timestamp() {
        // Same signature with another `t`: the timestamp is signed too.
        let header = sign(BODY, SECRET, NOW).replace("t=1700000000", "t=1700000100");
        assert_eq!(verify(&header, BODY, SECRET, NOW, 300), Err(SignatureError::Mismatch));
    }

    #[test]
    fn refuses_stale_and_future_timestamps() {
        let old = sign(BODY, SECRET, NOW - 301);
        assert_eq!(verify(&old, BODY, SECRET, NOW, 300), Err(SignatureError::Stale));
        let future = sign(BODY, SECRET, NOW + 301);
        assert_eq!(verify(&future, BODY, SECRET, NOW, 300), Err(SignatureError::Stale));
        let exact = sign(BODY, SECRET, NOW);
        assert_eq!(verify(&exact, BODY, SECRET, NOW + 1, 0), Err(SignatureError::Stale));
        assert_eq!(verify(&exact, BODY, SECRET, NOW + 1, -5), Err(SignatureError::Stale));
        assert_eq!(verify(&exact, BODY, SECRET, NOW, 0), Ok(()));
        let ancient = sign(BODY, SECRET, 0);
        assert_eq!(
            verify(&ancient, BODY, SECRET, i64::MAX, i64::MAX),
            Ok(()),
            "no overflow"
        );
        assert_eq!(
            verify(&ancient, BODY, SECRET, i64::MIN, 300),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn a_replay_within_the_tolerance_verifies() {
        // Replays are stopped by deduplicating event ids, not here.
        let header = sign(BODY, SECRET, NOW);
        for later in [0, 1, 60, 299] {
            assert_eq!(verify(&header, BODY, SECRET, NOW + later, 300), Ok(()));
        }
    }

    #[test]
    fn refuses_missing_and_garbled_headers() {
        let v1 = sign(BODY, SECRET, NOW).split_once(",v1=").unwrap().1.to_owned();
        assert_eq!(verify("", BODY, SECRET, NOW, 300), Err(SignatureError::Missing));
        assert_eq!(verify("  ", BODY, SECRET, NOW, 300), Err(SignatureError::Missing));
        for header in [
            "garbage".to_owned(),
            "t=,v1=abc".to_owned(),
            format!("v1={v1}"),
            format!("t={NOW}"),
            format!("t={NOW},v0={v1}"),
            format!("t=-{NOW},v1={v1}"),
            format!("t=+{NOW},v1={v1}"),
            format!("t=1.7e9,v1={v1}"),
            format!("t=99999999999999999999,v1={v1}"),
            format!("t={NOW},t={NOW},v1={v1}"),
            format!("t={NOW};v1={v1}"),
            format!("t={NOW},v1{v1}"),
        ] {
            assert_eq!(
                verify(&header, BODY, SECRET, NOW, 300),
                Err(SignatureError::Malformed),
                "{header:?}"
            );
        }
    }

    fn envelope(kind: &str, object: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": "evt_3OabcXLkdIwHu7ix0xyz1234",
            "object": "event",
            "api_version": "2024-06-20",
            "created": 1_700_000_123,
            "data": {"object": object, "previous_attributes": {"status": "processing"}},
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "type": kind,
        }))
        .unwrap()
    }

    fn intent(status: &str) -> serde_json::Value {
        json!({
            "id": "pi_3OabcXLkdIwHu7ix1a2b3c4d",
            "object": "payment_intent",
            "amount": 4999,
            "amount_capturable": 0,
            "amount_received": 4999,
            "automatic_payment_methods": {"allow_redirects": "always", "enabled": true},
            "capture_method": "automatic",
            "client_secret": "pi_3OabcXLkdIwHu7ix1a2b3c4d_secret_Xyz",
            "confirmation_method": "automatic",
            "created": 1_700_000_000,
            "currency": "usd",
            "customer": null,
            "last_payment_error": null,
            "latest_charge": "ch_3OabcXLkdIwHu7ix1q2w3e4r",
            "livemode": false,
            "metadata": {"order_id": "0199a3c4-7d2e-7c39-b1c2-4f0e8a9b6d11"},
            "payment_method": "pm_1OabcXLkdIwHu7ixAbCdEfGh",
            "payment_method_types": ["card"],
            "status": status,
        })
    }

    #[test]
    fn reads_payment_intent_succeeded() {
        let event = StripeEvent::parse(&envelope("payment_intent.succeeded", intent("succeeded"))).unwrap();
        assert_eq!(event.id, "evt_3OabcXLkdIwHu7ix0xyz1234");
        assert_eq!(event.kind, "payment_intent.succeeded");
        assert_eq!(event.known_kind(), Some(EventKind::PaymentIntentSucceeded));
        assert_eq!(event.created, 1_700_000_123);
        assert!(!event.livemode);
        assert_eq!(event.refund, None);
        assert_eq!(event.intent_id(), Some("pi_3OabcXLkdIwHu7ix1a2b3c4d"));
        let read = event.intent.unwrap();
        assert_eq!(
            read,
            IntentObject {
                id: "pi_3OabcXLkdIwHu7ix1a2b3c4d".to_owned(),
                amount: Money::new(4999, Currency::USD),
                status: "succeeded".to_owned(),
                order_id: Some("0199a3c4-7d2e-7c39-b1c2-4f0e8a9b6d11".to_owned()),
                latest_charge: Some("ch_3OabcXLkdIwHu7ix1q2w3e4r".to_owned()),
                card: None,
                failure: None,
            }
        );
        assert_eq!(read.payment_status(), Some(PaymentStatus::Succeeded));
    }

    #[test]
    fn reads_the_card_of_an_expanded_latest_charge() {
        let mut object = intent("succeeded");
        object["latest_charge"] = json!({
            "id": "ch_3OabcXLkdIwHu7ix1q2w3e4r",
            "object": "charge",
            "amount": 4999,
            "amount_refunded": 0,
            "currency": "usd",
            "paid": true,
            "payment_intent": "pi_3OabcXLkdIwHu7ix1a2b3c4d",
            "payment_method_details": {
                "card": {"brand": "visa", "country": "US", "exp_month": 12, "exp_year": 2030, "funding": "credit", "last4": "4242"},
                "type": "card"
            },
            "refunded": false,
            "status": "succeeded"
        });
        let event = StripeEvent::parse(&envelope("payment_intent.succeeded", object)).unwrap();
        let read = event.intent.unwrap();
        assert_eq!(read.latest_charge.as_deref(), Some("ch_3OabcXLkdIwHu7ix1q2w3e4r"));
        assert_eq!(
            read.card,
            Some(Card {
                brand: "visa".to_owned(),
                last4: "4242".to_owned()
            })
        );
    }

    #[test]
    fn reads_payment_failed_and_canceled() {
        let mut failed = intent("requires_payment_method");
        failed["latest_charge"] = json!(null);
        failed["last_payment_error"] = json!({
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "doc_url": "https://stripe.com/docs/error-codes/card-declined",
            "message": "Your card has insufficient funds.",
            "type": "card_error"
        });
        let event = StripeEvent::parse(&envelope("payment_intent.payment_failed", failed)).unwrap();
        assert_eq!(event.known_kind(), Some(EventKind::PaymentIntentPaymentFailed));
        let failed = event.intent.unwrap();
        assert_eq!(failed.payment_status(), Some(PaymentStatus::RequiresPayment));
        assert_eq!(failed.latest_charge, None);
        assert_eq!(
            failed.failure,
            Some(PaymentFailure {
                code: Some("card_declined".to_owned()),
                decline_code: Some("insufficient_funds".to_owned()),
                message: Some("Your card has insufficient funds.".to_owned()),
            })
        );

        let mut canceled = intent("canceled");
        canceled["metadata"] = json!({});
        canceled["currency"] = json!("eur");
        let event = StripeEvent::parse(&envelope("payment_intent.canceled", canceled)).unwrap();
        assert_eq!(event.known_kind(), Some(EventKind::PaymentIntentCanceled));
        let canceled = event.intent.unwrap();
        assert_eq!(canceled.payment_status(), Some(PaymentStatus::Canceled));
        assert_eq!(canceled.order_id, None, "an intent made by something else");
        assert_eq!(canceled.amount, Money::new(4999, Currency::EUR));
    }

    #[test]
    fn reads_charge_refunded() {
        let charge = json!({
            "id": "ch_3OabcXLkdIwHu7ix1q2w3e4r",
            "object": "charge",
            "amount": 4999,
            "amount_captured": 4999,
            "amount_refunded": 1500,
            "balance_transaction": "txn_3OabcXLkdIwHu7ix1z2x3c4v",
            "captured": true,
            "currency": "usd",
            "metadata": {"order_id": "0199a3c4-7d2e-7c39-b1c2-4f0e8a9b6d11"},
            "paid": true,
            "payment_intent": "pi_3OabcXLkdIwHu7ix1a2b3c4d",
            "payment_method_details": {"card": {"brand": "mastercard", "last4": "4444"}, "type": "card"},
            "refunded": false,
            "refunds": {"object": "list", "data": [], "has_more": false},
            "status": "succeeded"
        });
        let event = StripeEvent::parse(&envelope("charge.refunded", charge)).unwrap();
        assert_eq!(event.known_kind(), Some(EventKind::ChargeRefunded));
        assert_eq!(event.intent, None);
        assert_eq!(event.intent_id(), Some("pi_3OabcXLkdIwHu7ix1a2b3c4d"));
        assert_eq!(
            event.refund,
            Some(ChargeRefund {
                charge_id: "ch_3OabcXLkdIwHu7ix1q2w3e4r".to_owned(),
                intent_id: Some("pi_3OabcXLkdIwHu7ix1a2b3c4d".to_owned()),
                amount: Money::new(4999, Currency::USD),
                amount_refunded: Money::new(1500, Currency::USD),
                fully_refunded: false,
                order_id: Some("0199a3c4-7d2e-7c39-b1c2-4f0e8a9b6d11".to_owned()),
                card: Some(Card {
                    brand: "mastercard".to_owned(),
                    last4: "4444".to_owned()
                }),
            })
        );
    }

    #[test]
    fn reads_the_envelope_of_other_events() {
        let customer = json!({"id": "cus_Oabc", "object": "customer", "email": "a@example.com"});
        let event = StripeEvent::parse(&envelope("customer.created", customer)).unwrap();
        assert_eq!(event.kind, "customer.created");
        assert_eq!(event.known_kind(), None);
        assert_eq!((event.intent, event.refund), (None, None));

        let charge =
            json!({"id": "ch_1", "object": "charge", "amount": 100, "currency": "usd", "payment_intent": "pi_1"});
        let event = StripeEvent::parse(&envelope("charge.succeeded", charge)).unwrap();
        assert_eq!(
            (event.intent_id(), &event.refund),
            (None, &None),
            "only charge.refunded reads a refund"
        );

        let created =
            StripeEvent::parse(&envelope("payment_intent.created", intent("requires_payment_method"))).unwrap();
        assert_eq!(created.known_kind(), None);
        assert!(created.intent.is_some(), "any intent object is read");
    }

    #[test]
    fn refuses_bodies_that_are_not_events() {
        for body in [
            b"".as_slice(),
            b"not json",
            br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#,
            br#"{"id":"evt_1","type":"x","created":1,"data":{}}"#,
        ] {
            assert!(StripeEvent::parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        let mut no_amount = intent("succeeded");
        no_amount.as_object_mut().unwrap().remove("amount");
        assert!(StripeEvent::parse(&envelope("payment_intent.succeeded", no_amount)).is_err());
        let mut bad_currency = intent("succeeded");
        bad_currency["currency"] = json!("dollars");
        assert!(StripeEvent::parse(&envelope("payment_intent.succeeded", bad_currency)).is_err());
    }

    #[test]
    fn names_event_kinds_as_stripe_does() {
        for kind in [
            EventKind::PaymentIntentSucceeded,
            EventKind::PaymentIntentPaymentFailed,
            EventKind::PaymentIntentCanceled,
            EventKind::ChargeRefunded,
        ] {
            assert_eq!(EventKind::from_type(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
    }
}
