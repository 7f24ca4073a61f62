//! Extractors whose rejections are problem+json instead of plain text.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(r) => Err(r.into()),
        }
    }
}

pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(r) => Err(r.into()),
        }
    }
}

pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(r) => Err(r.into()),
        }
    }
}

/// A list's `cursor`: the `next` id of the page before; none when empty.
pub fn id_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    match cursor {
        None | Some("") => Ok(None),
        // Exactly the form the document states (1 to 18 digits), so what
        // the document calls valid always parses.
        Some(c) if c.len() <= 18 && c.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(c.parse::<i64>().ok())
        }
        Some(_) => Err(ApiError::bad_request(
            "invalid_query",
            "cursor must be the `next` value of a previous page",
        )),
    }
}

/// A list's `limit` query parameter: 1 to `MAX` (the bounds the OpenAPI
/// document states). Out of range it is refused with 400 invalid_query
/// rather than quietly clamped, so a client generated from the document
/// never gets a page of a size it did not ask for.
#[derive(Debug, Clone, Copy)]
pub struct Limit<const MAX: u32 = 1000>(pub u32);

impl<const MAX: u32> Limit<MAX> {
    /// The limit asked for, or the lists' default of 100.
    pub fn or_default(limit: Option<Self>) -> u32 {
        limit.map_or(100.min(MAX), |l| l.0)
    }
}

impl<'de, const MAX: u32> serde::Deserialize<'de> for Limit<MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if (1..=u64::from(MAX)).contains(&n) {
            Ok(Self(n as u32))
        } else {
            Err(serde::de::Error::custom(format!(
                "limit must be 1 to {MAX}, not {n}"
            )))
        }
    }
}

/// An event sequence number given as `after`: 0 to i64::MAX, as the
/// document states; anything else is 400 invalid_query.
#[derive(Debug, Clone, Copy)]
pub struct Seq(pub i64);

impl<'de> serde::Deserialize<'de> for Seq {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        if n < 0 {
            return Err(serde::de::Error::custom(format!(
                "after must be a sequence number (0 or more), not {n}"
            )));
        }
        Ok(Self(n))
    }
}

/// An optional whole number in a JSON body. JSON Schema counts `3.0` as
/// an integer, and some clients' serializers write whole numbers so; the
/// API takes them as the document promises. A fraction or a value out of
/// the field's range is refused (422 invalid_body).
pub fn whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    use serde::Deserialize;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let v = if let Some(i) = n.as_i64() {
        Some(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        Some(i128::from(u))
    } else {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e30)
            .map(|f| f as i128)
    };
    v.and_then(|v| T::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number in range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_refused_outside_the_documented_bounds() {
        let limit = |s: &str| serde_json::from_str::<Limit>(s).map(|l| l.0).ok();
        assert_eq!(limit("1"), Some(1));
        assert_eq!(limit("1000"), Some(1000));
        assert_eq!(limit("0"), None);
        assert_eq!(limit("1001"), None);
        assert_eq!(limit("99999999999999999999"), None);
        assert_eq!(
            serde_json::from_str::<Limit<10000>>("10000").unwrap().0,
            10000
        );
        assert_eq!(Limit::<1000>::or_default(None), 100);
    }

    #[test]
    fn after_is_a_sequence_number() {
        assert_eq!(serde_json::from_str::<Seq>("0").unwrap().0, 0);
        assert!(serde_json::from_str::<Seq>("-1").is_err());
        assert!(serde_json::from_str::<Seq>("9223372036854775808").is_err());
    }

    #[test]
    fn a_cursor_is_up_to_18_digits_or_empty() {
        assert_eq!(id_cursor(None).unwrap(), None);
        assert_eq!(id_cursor(Some("")).unwrap(), None);
        assert_eq!(id_cursor(Some("42")).unwrap(), Some(42));
        assert_eq!(
            id_cursor(Some("999999999999999999")).unwrap(),
            Some(999_999_999_999_999_999)
        );
        for bad in ["-5", "+5", " 5", "5a", "9999999999999999999"] {
            assert!(id_cursor(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn whole_numbers_may_be_written_as_floats() {
        #[derive(serde::Deserialize)]
        struct B {
            #[serde(default, deserialize_with = "whole")]
            n: Option<u32>,
        }
        let n = |s: &str| serde_json::from_str::<B>(s).map(|b| b.n);
        assert_eq!(n("{}").unwrap(), None);
        assert_eq!(n(r#"{"n": null}"#).unwrap(), None);
        assert_eq!(n(r#"{"n": 3}"#).unwrap(), Some(3));
        assert_eq!(n(r#"{"n": 3.0}"#).unwrap(), Some(3));
        assert_eq!(n(r#"{"n": 4294967295}"#).unwrap(), Some(u32::MAX));
        for bad in ["3.5", "-1", "4294967296", "1e30", "\"3\""] {
            assert!(n(&format!(r#"{{"n": {bad}}}"#)).is_err(), "{bad}");
        }
    }
}
