//! `JsonReply<T>`: a JSON response encoded straight from `T`'s serde `Serialize` (by sonic-rs,
//! whose SIMD string escaping is several times serde_json's), documented with `T`'s OpenAPI
//! schema.
//!
//! poem-openapi's `Json<T>` encodes through a `serde_json::Value` tree (a map with hashed keys
//! and an owned string per field), which on a page of products cost more than the whole
//! handler. Hot responses use this instead. Debug builds encode both ways and insist the
//! results agree, so every HTTP test also checks that the served JSON is what the OpenAPI
//! document describes.

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

impl<T: Type> Payload for JsonReply<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

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

impl<T: Serialize + ToJSON> IntoResponse for JsonReply<T> {
    fn into_response(self) -> Response {
        // Most answers are a few KiB (a page of products ~40): start there rather than grow
        // from a few bytes by copying.
        let mut bytes = Vec::with_capacity(8 * 1024);
        if let Err(e) = sonic_rs::to_writer(&mut bytes, &self.0) {
            tracing::error!(error = %e, "response encoding failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        #[cfg(debug_assertions)]
        {
            let served = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
            debug_assert_eq!(
                served,
                self.0.to_json(),
                "the served and OpenAPI encodings of {} differ",
                std::any::type_name::<T>()
            );
        }
        Response::builder()
            .content_type(<Self as Payload>::CONTENT_TYPE)
            .body(bytes)
    }
}

impl<T: Serialize + ToJSON> ApiResponse for JsonReply<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: <Self as Payload>::CONTENT_TYPE,
                    schema: T::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
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
