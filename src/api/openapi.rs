//! The OpenAPI document, served at /api/v1/openapi.json. It is written by
//! hand (src/api/openapi.json) and a test keeps it equal to the router.

pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::api::{Access, routes};

    fn document() -> serde_json::Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is valid JSON")
    }

    /// (method, path) of every operation in the document.
    fn documented() -> BTreeSet<(String, String)> {
        let doc = document();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, _) in item.as_object().expect("path item") {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    fn routed() -> BTreeSet<(String, String)> {
        routes()
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect()
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let d = documented();
        let r = routed();
        let missing: Vec<_> = r.difference(&d).collect();
        let extra: Vec<_> = d.difference(&r).collect();
        assert!(
            missing.is_empty(),
            "routes missing from openapi.json: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "openapi.json documents routes that do not exist: {extra:?}"
        );
    }

    #[test]
    fn documented_security_and_roles_match_the_router() {
        let doc = document();
        for r in routes() {
            let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
            let security = op.get("security").and_then(|s| s.as_array());
            let role = op.get("x-smsgate-role").and_then(|s| s.as_str());
            match r.access {
                Access::Public => {
                    assert!(
                        security.is_some_and(|s| s.is_empty()),
                        "{} {} is public: document it with \"security\": []",
                        r.method,
                        r.path
                    );
                    assert_eq!(role, None, "{} {}", r.method, r.path);
                }
                Access::GatewayPush => {
                    // No token: the guard checks the source address.
                    assert!(
                        security.is_some_and(|s| s.is_empty()),
                        "{} {} takes no token: document it with \"security\": []",
                        r.method,
                        r.path
                    );
                    assert_eq!(role, None, "{} {}", r.method, r.path);
                    assert_eq!(
                        op.get("x-smsgate-access").and_then(|s| s.as_str()),
                        Some("gateway-push"),
                        "{} {}: x-smsgate-access",
                        r.method,
                        r.path
                    );
                    assert!(
                        op["responses"].get("403").is_some(),
                        "{} {} must document 403 (source not allowed)",
                        r.method,
                        r.path
                    );
                }
                Access::Role(need) | Access::AgentOr(need) => {
                    assert_eq!(
                        op.get("x-smsgate-agent").and_then(|s| s.as_bool()),
                        matches!(r.access, Access::AgentOr(_)).then_some(true),
                        "{} {}: x-smsgate-agent (an agent's token may call it, for its own)",
                        r.method,
                        r.path
                    );
                    assert!(
                        security.is_none(),
                        "{} {} uses the default bearer security",
                        r.method,
                        r.path
                    );
                    assert_eq!(
                        role,
                        Some(need.as_str()),
                        "{} {}: x-smsgate-role",
                        r.method,
                        r.path
                    );
                    let responses = &op["responses"];
                    for code in ["401", "403"] {
                        assert!(
                            responses.get(code).is_some(),
                            "{} {} must document {code}",
                            r.method,
                            r.path
                        );
                    }
                }
            }
        }
    }

    /// The answers the guard gives on any route are documented on every
    /// operation: a client generated from the document knows them all.
    #[test]
    fn every_operation_documents_the_answers_any_route_can_give() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    continue;
                }
                let responses = &op["responses"];
                let mut need = vec!["414", "503"];
                if op.get("requestBody").is_some() {
                    need.push("413");
                }
                if method != "get" {
                    // A write may meet a full disk.
                    need.push("507");
                }
                for code in need {
                    assert!(
                        responses.get(code).is_some(),
                        "{method} {path} must document {code}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_problem_code_is_documented() {
        let doc = document();
        let documented: BTreeSet<String> =
            doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
                .as_array()
                .expect("Problem.code enum")
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
        let known: BTreeSet<String> = crate::api::error::CODES
            .iter()
            .map(|(c, _)| c.to_string())
            .collect();
        assert_eq!(
            documented, known,
            "Problem.code in openapi.json must list exactly error::CODES"
        );
    }
}
