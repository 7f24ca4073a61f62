//! Any template and any values: parsing and rendering never panic, a
//! rendered header never holds a line break, a value rendered in a query
//! or a form decodes back to itself, and a value rendered inside a JSON
//! string is read back as itself.
//!
//! Input: `template` NUL `text` NUL `number` (UTF-8; text and number may
//! be absent).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate_proto::http_api::{self, Place, Template, Values};

fuzz_target!(|input: &str| {
    let mut parts = input.splitn(3, '\0');
    let template = parts.next().unwrap_or_default();
    let text = parts.next().unwrap_or_default();
    let number = parts.next().unwrap_or_default();
    let values = Values {
        number,
        text,
        sender: "S",
        message_id: "1",
        ..Values::default()
    };
    if let Ok(t) = Template::parse(template) {
        for place in [
            Place::Path,
            Place::Query,
            Place::Form,
            Place::Json,
            Place::Header,
        ] {
            if let Ok(out) = t.render(place, &values)
                && place == Place::Header
                && !t.literal_text().contains(['\r', '\n'])
            {
                assert!(!out.contains(['\r', '\n']));
            }
        }
        let _ = t.render_url(&values);
    }
    let one = Template::parse("{text}").expect("a placeholder");
    for place in [Place::Query, Place::Form] {
        let enc = one.render(place, &values).expect("no header");
        let pairs = http_api::form_decode(format!("x={enc}").as_bytes()).expect("UTF-8");
        assert_eq!(pairs, vec![("x".to_string(), text.to_string())]);
    }
    let json = one.render(Place::Json, &values).expect("no header");
    let back: String = serde_json::from_str(&format!("\"{json}\"")).expect("a JSON string");
    assert_eq!(back, text);
    let _ = http_api::Fields::parse(None, template.as_bytes()).map(|f| f.get(text));
});
