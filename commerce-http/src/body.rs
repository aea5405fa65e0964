//! `JsonBody<T>`: a JSON request body documented with `T`'s OpenAPI schema but parsed with serde
//! and `serde_path_to_error`, so a malformed body gets a 400 naming the exact field.

use poem::http::StatusCode;
use poem::{Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde::de::DeserializeOwned;

use crate::problem::{ApiError, Problem, ProblemField};

/// A JSON request body of type `T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonBody<T>(pub T);

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// Turns a serde error with its path into a 400 problem naming the field.
fn parse_error(err: serde_path_to_error::Error<serde_json::Error>) -> poem::Error {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let mut field = if path == "." || path.is_empty() {
        "body".to_owned()
    } else {
        path
    };
    // serde reports a missing field at its parent; name the field itself.
    let text = inner.to_string();
    if let Some(name) = text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        field = if field == "body" {
            name.to_owned()
        } else {
            format!("{field}.{name}")
        };
    }
    let message = match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("malformed JSON at line {} column {}", inner.line(), inner.column())
        }
        serde_json::error::Category::Data | serde_json::error::Category::Io => {
            // serde's text ends with " at line L column C"; the field name says where already.
            let text = inner.to_string();
            match text.rfind(" at line ") {
                Some(cut) => text[..cut].to_owned(),
                None => text,
            }
        }
    };
    let problem = Problem::new(StatusCode::BAD_REQUEST, "malformed_body", format!("{field}: {message}"))
        .with_errors(vec![ProblemField { field, message }]);
    poem::Error::from_response(poem::IntoResponse::into_response(ApiError::from_problem(problem)))
}

impl<T: Type + DeserializeOwned + Send> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(_request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = body.take()?.into_bytes().await?;
        parse_bytes(&bytes)
    }
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

fn parse_bytes<T: DeserializeOwned>(bytes: &[u8]) -> poem::Result<JsonBody<T>> {
    // An empty body reads as `{}`, so the answer names the first missing field (and bodies
    // whose fields are all optional may be left out).
    let text: &[u8] = if is_blank(bytes) { b"{}" } else { bytes };
    let de = &mut serde_json::Deserializer::from_slice(text);
    let value = serde_path_to_error::deserialize(de).map_err(parse_error)?;
    Ok(JsonBody(value))
}

impl<'a, T: Type + DeserializeOwned + Send> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: <Self as Payload>::CONTENT_TYPE,
                schema: Self::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match request.content_type() {
            Some(ct) if <Self as Payload>::check_content_type(ct) => {
                <Self as ParsePayload>::from_request(request, body).await
            }
            Some(ct) => Err(poem::Error::from_string(
                format!("content type {ct:?} is not supported; send application/json"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            )),
            None => {
                // No Content-Type is fine for an empty body only.
                let bytes = body.take()?.into_bytes().await?;
                if is_blank(&bytes) {
                    parse_bytes(&bytes)
                } else {
                    Err(poem::Error::from_string(
                        "missing Content-Type header; send application/json",
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ))
                }
            }
        }
    }
}

/// A request body kept as the exact bytes sent (for signature checks such as Stripe's, which
/// sign the raw payload). Documented as a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBody(pub Vec<u8>);

impl Payload for RawBody {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(_content_type: &str) -> bool {
        true
    }

    fn schema_ref() -> MetaSchemaRef {
        <serde_json::Value as Type>::schema_ref()
    }
}

impl ParsePayload for RawBody {
    const IS_REQUIRED: bool = true;

    async fn from_request(_request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        Ok(Self(body.take()?.into_vec().await?))
    }
}

impl<'a> ApiExtractor<'a> for RawBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: <Self as Payload>::CONTENT_TYPE,
                schema: Self::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        <Self as ParsePayload>::from_request(request, body).await
    }
}
