//! One event as the portal receives it: the body of a webhook delivery and
//! the `data:` of an event-stream message are the same JSON object.

use crate::store::events::Event;

#[derive(serde::Serialize)]
struct Payload<'a> {
    seq: i64,
    /// Unix ms, and the same instant in RFC 3339 (UTC).
    at: i64,
    time: String,
    kind: &'a str,
    campaign: Option<&'a str>,
    interaction: Option<i64>,
    data: &'a serde_json::Value,
}

/// The event as compact JSON: `{"seq","at","time","kind","campaign",
/// "interaction","data"}`.
pub fn body(e: &Event) -> String {
    let time = jiff::Timestamp::from_millisecond(e.at)
        .map(|t| t.to_string())
        .unwrap_or_default();
    serde_json::to_string(&Payload {
        seq: e.seq,
        at: e.at,
        time,
        kind: &e.kind,
        campaign: e.campaign.as_deref(),
        interaction: e.interaction,
        data: &e.data,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_the_event_whole() {
        let e = Event {
            seq: 7,
            at: 1_765_000_000_123,
            kind: "message.received".into(),
            campaign: Some("ventas".into()),
            interaction: Some(3),
            data: serde_json::json!({"text": "hola"}),
        };
        let v: serde_json::Value = serde_json::from_str(&body(&e)).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["kind"], "message.received");
        assert_eq!(v["campaign"], "ventas");
        assert_eq!(v["interaction"], 3);
        assert_eq!(v["data"]["text"], "hola");
        assert_eq!(v["time"], "2025-12-06T05:46:40.123Z");
        assert!(body(&e).starts_with("{\"seq\":7,"));
    }
}
