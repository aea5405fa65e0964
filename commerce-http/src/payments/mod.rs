//! Payment gateway adapters: [`stripe::StripeGateway`] over Stripe's REST API, and Stripe
//! [`webhook`] signature checking and event reading.

pub mod stripe;
pub mod webhook;
