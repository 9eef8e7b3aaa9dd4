//! The API's OpenAPI 3.1 document: written by hand in
//! `control-plane/openapi/openapi.yaml` (easier to review than code that
//! generates it, and no derive crates to compile), compiled into the binary
//! and served as JSON by `GET /openapi.json`. The tests below keep it true:
//! it names exactly the routes of `routes.rs`, and its errors share one shape.

use std::sync::OnceLock;

use serde_json::Value;

/// The document as written.
pub const SOURCE: &str = include_str!("../../openapi/openapi.yaml");

/// The document does not parse (a bug the tests catch).
#[derive(Debug, thiserror::Error)]
#[error("the OpenAPI document does not parse: {0}")]
pub struct OpenApiError(String);

fn loaded() -> &'static Result<(Value, String), OpenApiError> {
    static DOCUMENT: OnceLock<Result<(Value, String), OpenApiError>> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let value: Value =
            serde_yaml_ng::from_str(SOURCE).map_err(|e| OpenApiError(e.to_string()))?;
        let json = serde_json::to_string(&value).map_err(|e| OpenApiError(e.to_string()))?;
        Ok((value, json))
    })
}

/// The document, parsed once.
pub fn document() -> Result<&'static Value, &'static OpenApiError> {
    loaded().as_ref().map(|(value, _)| value)
}

/// The document as JSON text, rendered once.
pub fn document_json() -> Result<&'static str, &'static OpenApiError> {
    loaded().as_ref().map(|(_, json)| json.as_str())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::routes::routes;
    use super::*;

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn doc() -> &'static Value {
        match document() {
            Ok(doc) => doc,
            Err(e) => panic!("{e}"),
        }
    }

    /// Every operation of the document: (METHOD, path, operation).
    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                assert!(
                    METHODS.contains(&method.as_str()),
                    "{path}: {method} is not an HTTP method"
                );
                ops.push((method.to_uppercase(), path.clone(), op));
            }
        }
        ops
    }

    /// Follows a local `$ref` (`#/components/...`); panics on a dangling one.
    fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').expect("a local reference");
                let target = doc
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("{reference} resolves to nothing"));
                resolve(doc, target)
            }
            None => value,
        }
    }

    #[test]
    fn the_document_names_exactly_the_routes_of_the_router() {
        let documented: BTreeSet<(String, String)> = operations(doc())
            .into_iter()
            .map(|(method, path, _)| (method, path))
            .collect();
        let routed: BTreeSet<(String, String)> = routes()
            .into_iter()
            .map(|r| (r.verb.method().to_string(), r.path.to_owned()))
            .collect();
        let missing: Vec<_> = routed.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty(),
            "routes missing from openapi/openapi.yaml: {missing:?}"
        );
        assert!(
            stale.is_empty(),
            "openapi/openapi.yaml names routes the router does not have: {stale:?}"
        );
    }

    #[test]
    fn the_document_is_well_formed_and_errors_share_one_schema() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        // The shared error shape.
        let error = &doc["components"]["schemas"]["Error"];
        let required: BTreeSet<&str> = error["required"]
            .as_array()
            .expect("Error.required")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(required, BTreeSet::from(["code", "message"]));
        for field in ["code", "message"] {
            assert_eq!(error["properties"][field]["type"], "string", "{field}");
        }

        let mut operation_ids = BTreeSet::new();
        for (method, path, op) in operations(doc) {
            let name = format!("{method} {path}");
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(!id.is_empty(), "{name}: no operationId");
            assert!(operation_ids.insert(id), "{name}: operationId {id} twice");
            let responses = op["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{name}: no responses");
            for (status, response) in responses {
                let code: u16 = status
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: status {status}"));
                assert!((100..600).contains(&code), "{name}: status {status}");
                let response = resolve(doc, response);
                assert!(
                    response["description"].is_string(),
                    "{name} {status}: no description"
                );
                // Every JSON error answer is the shared Error schema.
                if code >= 400 {
                    if let Some(json) = response.pointer("/content/application~1json") {
                        assert_eq!(
                            json["schema"]["$ref"], "#/components/schemas/Error",
                            "{name} {status}: a JSON error that is not Error"
                        );
                    }
                }
                if let Some(content) = response["content"].as_object() {
                    for media in content.values() {
                        resolve(doc, &media["schema"]);
                    }
                }
            }
            // The path's parameters are declared, and nothing else is in the path.
            let in_template: BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_owned)
                .collect();
            let declared: BTreeSet<String> = op["parameters"]
                .as_array()
                .map(|ps| ps.iter().map(|p| resolve(doc, p)).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{name}: a path parameter is required");
                    p["name"].as_str().unwrap_or_default().to_owned()
                })
                .collect();
            assert_eq!(in_template, declared, "{name}: path parameters");
            if let Some(body) = op.get("requestBody") {
                for media in body["content"].as_object().expect("content").values() {
                    resolve(doc, &media["schema"]);
                }
            }
            if let Some(security) = op.get("security") {
                for requirement in security.as_array().expect("security") {
                    for scheme in requirement.as_object().expect("requirement").keys() {
                        assert!(
                            doc["components"]["securitySchemes"][scheme].is_object(),
                            "{name}: unknown security scheme {scheme}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_reference_in_the_document_resolves() {
        fn walk(doc: &Value, value: &Value) {
            match value {
                Value::Object(map) => {
                    if map.contains_key("$ref") {
                        resolve(doc, value);
                    }
                    map.values().for_each(|v| walk(doc, v));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(doc, v)),
                _ => {}
            }
        }
        walk(doc(), doc());
        assert!(document_json().is_ok_and(|json| json.starts_with('{')));
    }
}
