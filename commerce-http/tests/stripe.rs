//! The Stripe gateway against a fake Stripe on a local port: what is sent (method, path,
//! headers, form fields), how Stripe's answers and refusals are read, and what is never sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::{HeaderMap, StatusCode};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Request, Response, Server};
use serde_json::{Value, json};

use commerce_core::Error;
use commerce_core::domain::{Currency, GatewayRefund, Money, OrderId, PaymentIntent, PaymentStatus};
use commerce_core::ports::PaymentGateway;
use commerce_http::payments::stripe::{DEFAULT_API_BASE, StripeConfig, StripeError, StripeGateway};

const SECRET_KEY: &str = "sk_test_51Nq2sXLkdIwHu7ixFakeKeyForTests0000";
const INTENT_ID: &str = "pi_3OabcXLkdIwHu7ix1a2b3c4d";
const ORDER_ID: &str = "0199a3c4-7d2e-7c39-b1c2-4f0e8a9b6d11";

/// One request as the fake received it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The form fields, decoded, in the order sent.
    fn form(&self) -> Vec<(String, String)> {
        reqwest::Url::parse(&format!("http://form.invalid/?{}", self.body))
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn assert_authorized(&self) {
        assert_eq!(
            self.header("authorization"),
            Some(format!("Bearer {SECRET_KEY}").as_str()),
            "{} {} carries the secret key",
            self.method,
            self.path
        );
    }

    fn assert_form_post(&self, path: &str) {
        assert_eq!(self.method, "POST");
        assert_eq!(self.path, path);
        assert_eq!(self.query, None, "nothing in the query string");
        assert_eq!(self.header("content-type"), Some("application/x-www-form-urlencoded"));
        self.assert_authorized();
    }
}

type Responder = dyn Fn(&Received) -> (u16, Value) + Send + Sync;

/// A stand-in for api.stripe.com on a free local port: records every request, answers with
/// what the test's responder says (JSON, with a `Request-Id`), after `delay`.
struct FakeStripe {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeStripe {
    async fn start(respond: impl Fn(&Received) -> (u16, Value) + Send + Sync + 'static) -> Self {
        Self::start_with(Duration::ZERO, respond).await
    }

    async fn start_with(delay: Duration, respond: impl Fn(&Received) -> (u16, Value) + Send + Sync + 'static) -> Self {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let respond: Arc<Responder> = Arc::new(respond);
        let app = poem::endpoint::make(move |mut req: Request| {
            let log = Arc::clone(&log);
            let respond = Arc::clone(&respond);
            async move {
                let body = req.take_body().into_string().await.unwrap();
                let received = Received {
                    method: req.method().to_string(),
                    path: req.uri().path().to_owned(),
                    query: req.uri().query().map(str::to_owned),
                    headers: req.headers().clone(),
                    body,
                };
                log.lock().unwrap().push(received.clone());
                tokio::time::sleep(delay).await;
                let (status, body) = respond(&received);
                let response = Response::builder()
                    .status(StatusCode::from_u16(status).unwrap())
                    .header("request-id", "req_Fake1234567890");
                match body {
                    Value::String(text) => response.content_type("text/html").body(text),
                    body => response.content_type("application/json").body(body.to_string()),
                }
            }
        });
        let server = tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Self {
            base: format!("http://127.0.0.1:{port}"),
            received,
            server,
        }
    }

    fn config(&self) -> StripeConfig {
        StripeConfig {
            secret_key: SECRET_KEY.to_owned(),
            api_base: self.base.clone(),
            timeout: Duration::from_secs(10),
        }
    }

    fn gateway(&self) -> StripeGateway {
        StripeGateway::new(self.config()).unwrap()
    }

    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

/// A PaymentIntent as Stripe returns it (API version 2024-06-20), trimmed of nothing we read.
fn intent_json(id: &str, amount: i64, currency: &str, status: &str) -> Value {
    json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": if status == "succeeded" { amount } else { 0 },
        "application": null,
        "application_fee_amount": null,
        "automatic_payment_methods": {"allow_redirects": "always", "enabled": true},
        "canceled_at": if status == "canceled" { json!(1_700_000_500) } else { json!(null) },
        "cancellation_reason": null,
        "capture_method": "automatic",
        "client_secret": format!("{id}_secret_5Rq8nBzWvQ3xYtLk2PfH9mJcA"),
        "confirmation_method": "automatic",
        "created": 1_700_000_000,
        "currency": currency,
        "customer": null,
        "description": null,
        "last_payment_error": null,
        "latest_charge": null,
        "livemode": false,
        "metadata": {"order_id": ORDER_ID},
        "next_action": null,
        "on_behalf_of": null,
        "payment_method": null,
        "payment_method_configuration_details": {"id": "pmc_1OabcXLkdIwHu7ixQwErTyUi", "parent": null},
        "payment_method_options": {"card": {"installments": null, "mandate_options": null, "network": null, "request_three_d_secure": "automatic"}},
        "payment_method_types": ["card", "link"],
        "processing": null,
        "receipt_email": null,
        "review": null,
        "setup_future_usage": null,
        "shipping": null,
        "source": null,
        "statement_descriptor": null,
        "statement_descriptor_suffix": null,
        "status": status,
        "transfer_data": null,
        "transfer_group": null
    })
}

/// Stripe's error document.
fn stripe_error(kind: &str, code: Option<&str>, message: &str) -> Value {
    json!({
        "error": {
            "code": code,
            "doc_url": code.map(|c| format!("https://stripe.com/docs/error-codes/{}", c.replace('_', "-"))),
            "message": message,
            "request_log_url": "https://dashboard.stripe.com/test/logs/req_Fake1234567890?t=1700000000",
            "type": kind
        }
    })
}

fn order() -> OrderId {
    OrderId::from_str(ORDER_ID).unwrap()
}

/// The [`StripeError`] inside a `Storage` error.
fn storage_error(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::Storage(source)) => {
            assert!(source.downcast_ref::<StripeError>().is_some(), "{source:?}");
            let text = format!("{source} {source:?}");
            assert!(!text.contains(SECRET_KEY), "the key leaked: {text}");
            text
        }
        other => panic!("expected Storage, got {other:?}"),
    }
}

#[tokio::test]
async fn is_named_stripe() {
    let gateway = StripeGateway::new(StripeConfig::new(SECRET_KEY)).unwrap();
    assert_eq!(gateway.name(), "stripe");
    assert_eq!(gateway.config().api_base, DEFAULT_API_BASE);
}

#[tokio::test]
async fn create_intent_posts_the_form_with_the_key_and_the_idempotency_key() {
    let stripe = FakeStripe::start(|r| {
        let form = r.form();
        let amount: i64 = form.iter().find(|(k, _)| k == "amount").unwrap().1.parse().unwrap();
        (200, intent_json(INTENT_ID, amount, "eur", "requires_payment_method"))
    })
    .await;
    let intent = stripe
        .gateway()
        .create_intent(order(), Money::new(1999, Currency::EUR), "order-0199a3c4")
        .await
        .unwrap();
    assert_eq!(
        intent,
        PaymentIntent {
            id: INTENT_ID.to_owned(),
            client_secret: format!("{INTENT_ID}_secret_5Rq8nBzWvQ3xYtLk2PfH9mJcA"),
            amount: Money::new(1999, Currency::EUR),
            status: PaymentStatus::RequiresPayment,
        }
    );
    let received = stripe.take();
    assert_eq!(received.len(), 1, "one request");
    let r = &received[0];
    r.assert_form_post("/v1/payment_intents");
    assert_eq!(r.header("idempotency-key"), Some("order-0199a3c4"));
    assert_eq!(
        r.form(),
        [
            ("amount", "1999"),
            ("currency", "eur"),
            ("metadata[order_id]", ORDER_ID),
            ("automatic_payment_methods[enabled]", "true"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec()
    );
    assert!(!r.body.contains(SECRET_KEY), "the key goes only in the header");
}

#[tokio::test]
async fn retrieve_gets_the_intent_and_maps_every_status() {
    let stripe = FakeStripe::start(|r| {
        let id = r.path.trim_start_matches("/v1/payment_intents/");
        let status = id.strip_prefix("pi_status_").unwrap_or("succeeded");
        (200, intent_json(id, 4999, "usd", status))
    })
    .await;
    let gateway = stripe.gateway();
    let intent = gateway.retrieve_intent(INTENT_ID).await.unwrap();
    assert_eq!(intent.id, INTENT_ID);
    assert_eq!(intent.amount, Money::new(4999, Currency::USD));
    assert_eq!(intent.status, PaymentStatus::Succeeded);
    let received = stripe.take();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, format!("/v1/payment_intents/{INTENT_ID}"));
    assert_eq!(r.query, None);
    assert_eq!(r.header("idempotency-key"), None, "reads take no idempotency key");
    assert!(r.body.is_empty());
    r.assert_authorized();

    for (stripe_status, ours) in [
        ("requires_payment_method", PaymentStatus::RequiresPayment),
        ("requires_confirmation", PaymentStatus::RequiresPayment),
        ("requires_action", PaymentStatus::RequiresPayment),
        ("processing", PaymentStatus::RequiresPayment),
        ("requires_capture", PaymentStatus::RequiresPayment),
        ("succeeded", PaymentStatus::Succeeded),
        ("canceled", PaymentStatus::Canceled),
    ] {
        let intent = gateway
            .retrieve_intent(&format!("pi_status_{stripe_status}"))
            .await
            .unwrap();
        assert_eq!(intent.status, ours, "{stripe_status}");
    }
    let text = storage_error(gateway.retrieve_intent("pi_status_exploded").await);
    assert!(text.contains("exploded"), "{text}");
}

#[tokio::test]
async fn a_missing_intent_is_not_found() {
    let stripe = FakeStripe::start(|r| {
        let id = r
            .path
            .trim_start_matches("/v1/payment_intents/")
            .trim_end_matches("/cancel");
        (
            404,
            stripe_error(
                "invalid_request_error",
                Some("resource_missing"),
                &format!("No such payment_intent: '{id}'"),
            ),
        )
    })
    .await;
    let gateway = stripe.gateway();
    for result in [
        gateway.retrieve_intent("pi_missing").await,
        gateway.cancel_intent("pi_missing").await,
    ] {
        assert!(
            matches!(
                result,
                Err(Error::NotFound {
                    entity: "payment intent"
                })
            ),
            "{result:?}"
        );
    }
    let received = stripe.take();
    assert_eq!(received[0].path, "/v1/payment_intents/pi_missing");
    assert_eq!(received[1].path, "/v1/payment_intents/pi_missing/cancel");
}

#[tokio::test]
async fn cancel_posts_to_the_intents_cancel_path() {
    let stripe = FakeStripe::start(|r| {
        let id = r
            .path
            .trim_start_matches("/v1/payment_intents/")
            .trim_end_matches("/cancel");
        (200, intent_json(id, 4999, "usd", "canceled"))
    })
    .await;
    let intent = stripe.gateway().cancel_intent(INTENT_ID).await.unwrap();
    assert_eq!(intent.id, INTENT_ID);
    assert_eq!(intent.status, PaymentStatus::Canceled);
    let received = stripe.take();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    r.assert_form_post(&format!("/v1/payment_intents/{INTENT_ID}/cancel"));
    assert!(r.body.is_empty(), "no fields: {:?}", r.body);
}

#[tokio::test]
async fn cancelling_a_captured_intent_is_a_payment_error() {
    let stripe = FakeStripe::start(|_| {
        (
            400,
            stripe_error(
                "invalid_request_error",
                Some("payment_intent_unexpected_state"),
                "You cannot cancel this PaymentIntent because it has a status of succeeded. Only a PaymentIntent with one of the following statuses may be canceled: requires_payment_method, requires_capture, requires_confirmation, requires_action, processing.",
            ),
        )
    })
    .await;
    match stripe.gateway().cancel_intent(INTENT_ID).await {
        Err(Error::Payment(message)) => {
            assert!(message.starts_with("You cannot cancel this PaymentIntent"), "{message}");
        }
        other => panic!("expected Payment, got {other:?}"),
    }
}

#[tokio::test]
async fn refund_posts_the_intent_and_amount_with_the_idempotency_key() {
    let stripe = FakeStripe::start(|r| {
        let form = r.form();
        let amount: i64 = form.iter().find(|(k, _)| k == "amount").unwrap().1.parse().unwrap();
        (
            200,
            json!({
                "id": "re_3OabcXLkdIwHu7ix1r2e3f4u",
                "object": "refund",
                "amount": amount,
                "balance_transaction": "txn_3OabcXLkdIwHu7ix1b2a3l4n",
                "charge": "ch_3OabcXLkdIwHu7ix1q2w3e4r",
                "created": 1_700_000_900,
                "currency": "usd",
                "destination_details": {"card": {"reference_status": "pending", "reference_type": "acquirer_reference_number", "type": "refund"}, "type": "card"},
                "metadata": {},
                "payment_intent": INTENT_ID,
                "reason": null,
                "receipt_number": null,
                "source_transfer_reversal": null,
                "status": "succeeded",
                "transfer_reversal": null
            }),
        )
    })
    .await;
    let refund = stripe
        .gateway()
        .refund(INTENT_ID, Money::new(1500, Currency::USD), "refund-0199a3c4-1")
        .await
        .unwrap();
    assert_eq!(
        refund,
        GatewayRefund {
            id: "re_3OabcXLkdIwHu7ix1r2e3f4u".to_owned(),
            amount: Money::new(1500, Currency::USD),
        }
    );
    let received = stripe.take();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    r.assert_form_post("/v1/refunds");
    assert_eq!(r.header("idempotency-key"), Some("refund-0199a3c4-1"));
    assert_eq!(
        r.form(),
        [("payment_intent", INTENT_ID), ("amount", "1500")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec()
    );
}

#[tokio::test]
async fn refund_refusals_are_payment_errors() {
    let stripe = FakeStripe::start(|r| {
        if r.header("idempotency-key") == Some("failed") {
            let mut refund =
                json!({"id": "re_1", "object": "refund", "amount": 100, "currency": "usd", "status": "failed"});
            refund["failure_reason"] = json!("expired_or_canceled_card");
            return (200, refund);
        }
        (
            400,
            stripe_error(
                "invalid_request_error",
                Some("amount_too_large"),
                "Refund amount ($60.00) is greater than unrefunded amount on charge ($49.99)",
            ),
        )
    })
    .await;
    let gateway = stripe.gateway();
    match gateway
        .refund(INTENT_ID, Money::new(6000, Currency::USD), "too-much")
        .await
    {
        Err(Error::Payment(message)) => assert_eq!(
            message,
            "Refund amount ($60.00) is greater than unrefunded amount on charge ($49.99)"
        ),
        other => panic!("expected Payment, got {other:?}"),
    }
    assert!(matches!(
        gateway
            .refund(INTENT_ID, Money::new(100, Currency::USD), "failed")
            .await,
        Err(Error::Payment(_))
    ));
}

#[tokio::test]
async fn a_key_sent_again_with_other_parameters_is_a_conflict_not_a_payment_error() {
    const MESSAGE: &str = "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than 'refund-1-0' if you meant to execute a different request.";
    let stripe = FakeStripe::start(|_| (400, stripe_error("idempotency_error", None, MESSAGE))).await;
    match stripe
        .gateway()
        .refund(INTENT_ID, Money::new(700, Currency::USD), "refund-1-0")
        .await
    {
        Err(Error::Conflict { code, message }) => {
            assert_eq!((code, message.as_ref()), (commerce_core::ports::KEY_REUSED, MESSAGE));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(stripe.take().len(), 1, "refused once, not retried");
}

#[tokio::test]
async fn a_declined_card_is_a_payment_error_with_stripes_message() {
    let stripe = FakeStripe::start(|_| {
        let mut error = stripe_error("card_error", Some("card_declined"), "Your card was declined.");
        error["error"]["decline_code"] = json!("generic_decline");
        error["error"]["payment_intent"] = intent_json(INTENT_ID, 1999, "usd", "requires_payment_method");
        (402, error)
    })
    .await;
    let result = stripe
        .gateway()
        .create_intent(order(), Money::new(1999, Currency::USD), "order-declined")
        .await;
    match result {
        Err(Error::Payment(message)) => assert_eq!(message, "Your card was declined."),
        other => panic!("expected Payment, got {other:?}"),
    }
    assert_eq!(stripe.take().len(), 1);
}

#[tokio::test]
async fn an_invalid_request_is_a_payment_error() {
    let stripe = FakeStripe::start(|_| {
        (
            400,
            json!({"error": {
                "code": "amount_too_small",
                "doc_url": "https://stripe.com/docs/error-codes/amount-too-small",
                "message": "Amount must be at least $0.50 usd",
                "param": "amount",
                "type": "invalid_request_error"
            }}),
        )
    })
    .await;
    let result = stripe
        .gateway()
        .create_intent(order(), Money::new(10, Currency::USD), "order-small")
        .await;
    assert!(
        matches!(&result, Err(Error::Payment(m)) if m == "Amount must be at least $0.50 usd"),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_secret_key_never_appears_in_errors() {
    let stripe = FakeStripe::start(|r| {
        let key = r
            .header("authorization")
            .unwrap()
            .trim_start_matches("Bearer ")
            .to_owned();
        if r.path == "/v1/refunds" {
            // A 4xx whose message (absurdly) echoes the key: shown to clients, so redacted.
            return (
                400,
                stripe_error("invalid_request_error", None, &format!("Bad request made with {key}")),
            );
        }
        (
            401,
            stripe_error(
                "invalid_request_error",
                None,
                &format!("Invalid API Key provided: {key}"),
            ),
        )
    })
    .await;
    let gateway = stripe.gateway();
    let text = storage_error(gateway.retrieve_intent(INTENT_ID).await);
    assert!(text.contains("401") && text.contains("<redacted>"), "{text}");
    match gateway.refund(INTENT_ID, Money::new(100, Currency::USD), "k").await {
        Err(Error::Payment(message)) => assert_eq!(message, "Bad request made with <redacted>"),
        other => panic!("expected Payment, got {other:?}"),
    }
    let debug = format!("{gateway:?} {:?}", gateway.config());
    assert!(!debug.contains(SECRET_KEY), "{debug}");
    assert!(debug.contains("<redacted>"));
}

#[tokio::test]
async fn provider_failures_are_storage_errors() {
    let stripe = FakeStripe::start(|r| match r.path.trim_start_matches("/v1/payment_intents/") {
        "pi_forbidden" => (
            403,
            stripe_error(
                "invalid_request_error",
                None,
                "The provided key 'rk_test_***0000' does not have the required permissions for this endpoint.",
            ),
        ),
        "pi_limited" => (
            429,
            stripe_error(
                "invalid_request_error",
                Some("rate_limit"),
                "Request rate limit exceeded.",
            ),
        ),
        "pi_broken" => (500, stripe_error("api_error", None, "An unknown error occurred")),
        "pi_gateway" => (
            502,
            Value::String("<html><body>502 Bad Gateway</body></html>".to_owned()),
        ),
        "pi_proxy" => (
            400,
            Value::String("<html><body>400 Bad Request</body></html>".to_owned()),
        ),
        "pi_garbled" => (200, json!({"id": "pi_garbled", "object": "payment_intent"})),
        _ => (200, intent_json(INTENT_ID, 100, "usd", "succeeded")),
    })
    .await;
    let gateway = stripe.gateway();
    for (id, expected) in [
        ("pi_forbidden", "403"),
        ("pi_limited", "rate_limit"),
        ("pi_broken", "500"),
        ("pi_gateway", "502 Bad Gateway"),
        ("pi_proxy", "400 Bad Request"),
        ("pi_garbled", "amount"),
    ] {
        let text = storage_error(gateway.retrieve_intent(id).await);
        assert!(text.contains(expected), "{id}: {text}");
        assert!(
            text.contains("req_Fake1234567890"),
            "{id}: the request id is kept: {text}"
        );
    }

    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = StripeGateway::new(StripeConfig {
        api_base: format!("http://127.0.0.1:{port}"),
        ..stripe.config()
    })
    .unwrap();
    let text = storage_error(unreachable.retrieve_intent(INTENT_ID).await);
    assert!(text.contains("retrieve payment intent"), "{text}");
}

#[tokio::test]
async fn a_slow_stripe_times_out_as_a_storage_error() {
    let stripe = FakeStripe::start_with(Duration::from_secs(5), |_| {
        (200, intent_json(INTENT_ID, 100, "usd", "succeeded"))
    })
    .await;
    let gateway = StripeGateway::new(StripeConfig {
        timeout: Duration::from_millis(200),
        ..stripe.config()
    })
    .unwrap();
    let started = std::time::Instant::now();
    storage_error(gateway.retrieve_intent(INTENT_ID).await);
    assert!(started.elapsed() < Duration::from_secs(4), "gave up after the timeout");
}

#[tokio::test]
async fn malicious_intent_ids_are_refused_without_a_request() {
    let stripe = FakeStripe::start(|_| (200, intent_json(INTENT_ID, 100, "usd", "succeeded"))).await;
    let gateway = stripe.gateway();
    let usd = Money::new(100, Currency::USD);
    for id in [
        "pi_1/../../v1/customers",
        "pi_1/cancel",
        "../customers",
        "pi_1?expand[]=customer",
        "pi_1#fragment",
        "pi_1%2F..%2Fcustomers",
        "pi 1",
        "pi_1\r\nX-Injected: 1",
        "pi_é",
        "",
    ] {
        for result in [
            gateway.retrieve_intent(id).await.map(drop),
            gateway.cancel_intent(id).await.map(drop),
            gateway.refund(id, usd, "key").await.map(drop),
        ] {
            match result {
                Err(Error::Validation(errors)) => assert_eq!(errors[0].field, "intentId", "{id:?}"),
                other => panic!("{id:?} should be refused, got {other:?}"),
            }
        }
    }
    assert!(stripe.take().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn bad_amounts_and_idempotency_keys_are_refused_without_a_request() {
    let stripe = FakeStripe::start(|_| (200, intent_json(INTENT_ID, 100, "usd", "succeeded"))).await;
    let gateway = stripe.gateway();
    let long = "k".repeat(256);
    for key in ["", "with space", "line\nbreak", "ключ", long.as_str()] {
        let created = gateway
            .create_intent(order(), Money::new(100, Currency::USD), key)
            .await;
        assert!(
            matches!(&created, Err(Error::Validation(e)) if e[0].field == "idempotencyKey"),
            "{key:?}: {created:?}"
        );
        let refunded = gateway.refund(INTENT_ID, Money::new(100, Currency::USD), key).await;
        assert!(
            matches!(&refunded, Err(Error::Validation(e)) if e[0].field == "idempotencyKey"),
            "{key:?}: {refunded:?}"
        );
    }
    for amount in [0, -100] {
        let created = gateway
            .create_intent(order(), Money::new(amount, Currency::USD), "k")
            .await;
        assert!(
            matches!(&created, Err(Error::Validation(e)) if e[0].field == "amount"),
            "{created:?}"
        );
        let refunded = gateway.refund(INTENT_ID, Money::new(amount, Currency::USD), "k").await;
        assert!(
            matches!(&refunded, Err(Error::Validation(e)) if e[0].field == "amount"),
            "{refunded:?}"
        );
    }
    assert!(stripe.take().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_path_prefix_in_the_api_base_is_kept() {
    let stripe = FakeStripe::start(|_| (200, intent_json(INTENT_ID, 100, "usd", "succeeded"))).await;
    let gateway = StripeGateway::new(StripeConfig {
        api_base: format!("{}/stripe-proxy/", stripe.base),
        ..stripe.config()
    })
    .unwrap();
    gateway.retrieve_intent(INTENT_ID).await.unwrap();
    assert_eq!(
        stripe.take()[0].path,
        format!("/stripe-proxy/v1/payment_intents/{INTENT_ID}")
    );
}

#[test]
fn unusable_configurations_are_refused() {
    let good = StripeConfig::new(SECRET_KEY);
    let cases = [
        (
            StripeConfig {
                secret_key: String::new(),
                ..good.clone()
            },
            "empty key",
        ),
        (StripeConfig::new("pk_test_51Nq2sXLkdIwHu7ix"), "a publishable key"),
        (StripeConfig::new("sk_"), "a bare prefix"),
        (StripeConfig::new("sk_test_abc\ndef"), "a newline in the key"),
        (
            StripeConfig {
                api_base: "ftp://api.stripe.com".to_owned(),
                ..good.clone()
            },
            "not http",
        ),
        (
            StripeConfig {
                api_base: "not a url".to_owned(),
                ..good.clone()
            },
            "not a URL",
        ),
        (
            StripeConfig {
                api_base: "https://user:pw@api.stripe.com".to_owned(),
                ..good.clone()
            },
            "credentials",
        ),
        (
            StripeConfig {
                api_base: "https://api.stripe.com/?x=1".to_owned(),
                ..good.clone()
            },
            "a query",
        ),
        (
            StripeConfig {
                timeout: Duration::ZERO,
                ..good.clone()
            },
            "a zero timeout",
        ),
    ];
    for (config, what) in cases {
        match StripeGateway::new(config) {
            Err(StripeError::Config(message)) => {
                assert!(!message.contains("abc"), "{what}: the key is not echoed: {message}")
            }
            other => panic!("{what} should be refused, got {other:?}"),
        }
    }
    assert!(StripeGateway::new(StripeConfig::new("rk_live_51Nq2sX")).is_ok());
    assert!(StripeGateway::new(good).is_ok());
}
