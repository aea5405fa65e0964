//! `JsonReply<T>`: a JSON response encoded straight from `T`'s serde `Serialize` (by sonic-rs,
//! whose SIMD string escaping is several times serde_json's), documented with `T`'s OpenAPI
//! schema; `EncodedJson<T>`: one whose bytes were put together beforehand (from cached
//! fragments), documented the same way.
//!
//! poem-openapi's `Json<T>` encodes through a `serde_json::Value` tree (a map with hashed keys
//! and an owned string per field), which on a page of products cost more than the whole
//! handler. Hot responses use this instead. Debug builds encode both ways and insist the
//! results agree, so every HTTP test also checks that the served JSON is what the OpenAPI
//! document describes.

use std::marker::PhantomData;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::ApiResponse;
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};
use serde::{Serialize, Serializer};

/// A 200 JSON response of type `T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonReply<T>(pub T);

impl<T: Serialize + ToJSON> IntoResponse for JsonReply<T> {
    fn into_response(self) -> Response {
        // Most answers are a few KiB (a page of products ~40): start there rather than grow
        // from a few bytes by copying.
        let bytes = match encode(&self.0) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "response encoding failed");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        };
        #[cfg(debug_assertions)]
        assert_served_as_documented(&bytes, &self.0);
        json_response(bytes)
    }
}

/// `value`'s JSON as [`JsonReply`] serves it.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, sonic_rs::Error> {
    let mut bytes = Vec::with_capacity(8 * 1024);
    sonic_rs::to_writer(&mut bytes, value)?;
    Ok(bytes)
}

/// Debug builds: the served bytes must decode to what poem-openapi would have written for
/// `value` (its `ToJSON`), so the OpenAPI document never drifts from what is served.
#[cfg(debug_assertions)]
fn assert_served_as_documented<T: ToJSON>(bytes: &[u8], value: &T) {
    let served = serde_json::from_slice::<serde_json::Value>(bytes).ok();
    assert_eq!(
        served,
        value.to_json(),
        "the served and OpenAPI encodings of {} differ",
        std::any::type_name::<T>()
    );
}

fn json_response(body: impl Into<poem::Body>) -> Response {
    Response::builder().content_type(JSON_CONTENT_TYPE).body(body)
}

const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The 200 response documented as `T`, for both reply types.
fn meta_of<T: Type>() -> MetaResponses {
    MetaResponses {
        responses: vec![MetaResponse {
            description: "",
            status: Some(200),
            status_range: None,
            content: vec![MetaMediaType {
                content_type: JSON_CONTENT_TYPE,
                schema: T::schema_ref(),
            }],
            headers: vec![],
        }],
    }
}

/// A 200 JSON response already encoded, documented as `T`.
#[derive(Debug, Clone)]
pub struct EncodedJson<T> {
    bytes: Bytes,
    schema: PhantomData<fn() -> T>,
}

impl<T: ToJSON> EncodedJson<T> {
    /// `bytes` must be the JSON of `documented()`, which debug builds build and compare (every
    /// HTTP test then checks the pre-encoded path); release builds never call it.
    pub fn new(bytes: impl Into<Bytes>, documented: impl FnOnce() -> T) -> Self {
        let bytes = bytes.into();
        #[cfg(debug_assertions)]
        assert_served_as_documented(&bytes, &documented());
        #[cfg(not(debug_assertions))]
        drop(documented);
        Self {
            bytes,
            schema: PhantomData,
        }
    }

    /// The encoded payload.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// Both reply types are a JSON payload and a 200 response documented as their `T`.
macro_rules! documented_as_t {
    ($reply:ident) => {
        impl<T: Type> Payload for $reply<T> {
            const CONTENT_TYPE: &'static str = JSON_CONTENT_TYPE;

            fn check_content_type(content_type: &str) -> bool {
                crate::JsonBody::<T>::check_content_type(content_type)
            }

            fn schema_ref() -> MetaSchemaRef {
                T::schema_ref()
            }

            fn register(registry: &mut Registry) {
                T::register(registry);
            }
        }

        impl<T: Type> ApiResponse for $reply<T> {
            fn meta() -> MetaResponses {
                meta_of::<T>()
            }

            fn register(registry: &mut Registry) {
                T::register(registry);
            }
        }
    };
}

documented_as_t!(JsonReply);
documented_as_t!(EncodedJson);

impl<T: Send> IntoResponse for EncodedJson<T> {
    fn into_response(self) -> Response {
        json_response(self.bytes)
    }
}

/// A timestamp as poem-openapi writes it (`to_rfc3339`, `+00:00`), for `#[serde(serialize_with)]`.
pub(crate) fn rfc3339<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339())
}

/// An optional timestamp as poem-openapi writes it (`null` when absent).
pub(crate) fn rfc3339_opt<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, s),
        None => s.serialize_none(),
    }
}
