//! Errors as RFC 9457 problem+json, each with a stable machine `code` that
//! the portal can branch on and a `detail` that tells a person what to fix.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use serde_json::json;

use crate::dialer::DialerError;
use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every machine code the API answers with, and what it means. The OpenAPI
/// document lists the same set (a test checks).
pub const CODES: &[(&str, &str)] = &[
    ("unauthorized", "no bearer token, or not a configured one"),
    ("forbidden", "the token's role may not call this route"),
    ("not_found", "no such route or resource"),
    (
        "method_not_allowed",
        "the route exists but not with this method",
    ),
    ("unsupported_media_type", "the body must be JSON"),
    ("invalid_json", "the body is not valid JSON"),
    (
        "invalid_body",
        "the JSON does not have the expected fields or types",
    ),
    ("invalid_query", "a query parameter is not valid"),
    ("invalid_path", "a path parameter is not valid"),
    (
        "uri_too_long",
        "the request's path and query are longer than 8192 bytes",
    ),
    (
        "body_too_large",
        "the body is larger than the route accepts",
    ),
    (
        "timeout",
        "the request took longer than [api] request_timeout_s; a write answered so was not stored",
    ),
    (
        "storage_full",
        "the disk holding the state directory is full; nothing was stored",
    ),
    (
        "busy",
        "smsgate cannot take the request now: every connection slot ([api] max_connections) stayed taken for request_timeout_s, or a gateway push came while the event queue was full; try again",
    ),
    (
        "not_ready",
        "the store is not readable or smsgate is stopping",
    ),
    ("shutting_down", "smsgate is stopping"),
    ("conflict", "the request conflicts with the current state"),
    (
        "config_invalid",
        "the config file has problems; the running config stays",
    ),
    (
        "config_unreadable",
        "the config file cannot be read; the running config stays",
    ),
    ("internal", "an internal error; the journal has the details"),
    (
        "push_not_allowed",
        "a gateway push came from an address not in the gateway's push_allow",
    ),
    (
        "invalid_push",
        "a gateway push body is not a JSON object with a known event",
    ),
    ("unknown_dialer", "no dialer of that name is configured"),
    ("empty_text", "the message text is empty"),
    ("text_too_long", "the text needs more than 10 SMS parts"),
    ("bad_priority", "priority is outside 1 to 9999"),
    (
        "bad_client_id",
        "client_id is empty, too long or has control characters",
    ),
    ("invalid_number", "the destination cannot be a phone number"),
    (
        "invalid_template",
        "the WhatsApp template's name, language or a variable is not valid, or variables came without a template",
    ),
    (
        "template_needs_whatsapp",
        "a template was given to a dialer that sends through no WhatsApp gateway",
    ),
    (
        "outside_window",
        "free text to a customer whose 24-hour WhatsApp window is closed on every gateway of the dialer; send a template",
    ),
    (
        "client_id_reused",
        "the client_id was used before for a different message",
    ),
    ("dialer_disabled", "the dialer is disabled in the config"),
    ("missing_filename", "an upload needs ?filename=NAME"),
    ("bad_filename", "the file name breaks the naming rules"),
    (
        "import_refused",
        "some lines are refused; errors[] lists each with its line and rule; nothing was imported",
    ),
    ("import_empty", "the uploaded file has no lines"),
    (
        "upload_unreadable",
        "the upload could not be read to its end",
    ),
    (
        "upload_stalled",
        "the upload sent nothing for [api] upload_idle_timeout_s; nothing of it was imported",
    ),
    (
        "too_many_uploads",
        "[api] max_uploads uploads are already being received or imported; try again after Retry-After seconds",
    ),
    (
        "receiver_failed",
        "a replayed webhook delivery was not taken by its receiver (no 2xx); the dead letter stays",
    ),
    (
        "too_many_streams",
        "[events] max_streams event streams are open already; try again after Retry-After seconds",
    ),
];

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Option<serde_json::Value>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        debug_assert!(
            CODES.iter().any(|(c, _)| *c == code),
            "problem code {code:?} is not listed in CODES (and the OpenAPI document)"
        );
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            errors: None,
            retry_after: None,
        }
    }

    pub fn with_errors(mut self, errors: serde_json::Value) -> Self {
        self.errors = Some(errors);
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            detail,
        )
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not allowed for this token's role",
            detail,
        )
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
    }
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, "Bad request", detail)
    }
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            "Request refused",
            detail,
        )
    }
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, "Conflict", detail)
    }
    pub fn too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "Request body too large",
            format!("the request body is larger than the {limit} bytes this route accepts"),
        )
    }
    pub fn unavailable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            "Service unavailable",
            detail,
        )
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        )
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:smsgate:problem:{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            code: self.code,
            detail: self.detail.clone(),
            errors: self.errors.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"smsgate\""),
            );
        }
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict(detail) => ApiError::conflict("conflict", detail),
            StoreError::Closed => ApiError::unavailable(
                "shutting_down",
                "smsgate is shutting down; try again shortly",
            ),
            e if e.is_full() => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_full",
                "Storage full",
                "the disk holding smsgate's state directory is full; nothing was stored. Free space there (smsgate recovers by itself) and send again",
            ),
            StoreError::Deadline => ApiError::unavailable(
                "timeout",
                "the store was busy for longer than [api] request_timeout_s; nothing was stored, so the request can be sent again",
            ),
            other => {
                tracing::error!(error = %other, "store error while answering an API request");
                ApiError::internal(
                    "the database could not complete the request; see the journal for details",
                )
            }
        }
    }
}

/// Turns axum's JSON rejections into problems that say what to fix.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as J;
        match &r {
            J::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "JSON expected",
                "send the body as JSON with the header Content-Type: application/json",
            ),
            J::JsonSyntaxError(_) => ApiError::bad_request(
                "invalid_json",
                format!("the body is not valid JSON: {}", r.body_text()),
            ),
            J::JsonDataError(_) => ApiError::unprocessable("invalid_body", r.body_text()),
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "Request body too large",
                "the request body is larger than this route accepts",
            ),
            _ => ApiError::bad_request("invalid_body", r.body_text()),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", r.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        ApiError::bad_request("invalid_path", r.body_text())
    }
}
/// The dialer's refusals: a message's (422 with the rule's code), a file's
/// (422 with every refused line, 413, 400) or an operator's (409).
impl From<DialerError> for ApiError {
    fn from(e: DialerError) -> Self {
        let code = match e {
            DialerError::Store(e) => return e.into(),
            DialerError::ClientIdReused(detail) => {
                return ApiError::conflict("client_id_reused", detail);
            }
            DialerError::Disabled(_) => {
                return ApiError::conflict("dialer_disabled", e.to_string());
            }
            DialerError::FileName(e) => {
                return ApiError::unprocessable("bad_filename", e.to_string());
            }
            DialerError::Lines { errors, count } => {
                let list: Vec<serde_json::Value> = errors
                    .iter()
                    .map(|e| json!({"line": e.line, "rule": e.rule.code(), "message": e.message}))
                    .collect();
                let shown = list.len() as u64;
                let mut detail = format!(
                    "{count} line(s) refused; nothing was imported. Fix them and upload the whole file again"
                );
                if shown < count {
                    detail.push_str(&format!(" (the first {shown} are listed)"));
                }
                return ApiError::unprocessable("import_refused", detail).with_errors(json!(list));
            }
            DialerError::Empty => {
                return ApiError::unprocessable("import_empty", "the file has no lines");
            }
            DialerError::TooLarge => {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "Request body too large",
                    "the upload is larger than [api] max_upload_bytes; split the file",
                );
            }
            DialerError::Read(reason) => {
                return ApiError::bad_request(
                    "upload_unreadable",
                    format!("the upload could not be read: {reason}"),
                );
            }
            DialerError::UnknownDialer { .. } => "unknown_dialer",
            DialerError::EmptyText => "empty_text",
            DialerError::TooManyParts { .. } | DialerError::TooLong { .. } => "text_too_long",
            DialerError::BadPriority(_) => "bad_priority",
            DialerError::BadClientId => "bad_client_id",
            DialerError::InvalidNumber { .. } => "invalid_number",
            DialerError::BadTemplate(_) => "invalid_template",
            DialerError::TemplateNeedsWhatsApp { .. } => "template_needs_whatsapp",
            DialerError::OutsideWindow { .. } => "outside_window",
        };
        ApiError::unprocessable(code, e.to_string())
    }
}
