//! The answer schema: a JSON Schema built from the candidates that constrains what the model
//! may answer.
//!
//! It is a `oneOf` with one branch per candidate, each carrying that candidate's *own* typed
//! params schema, plus an `escalate` branch:
//!
//! ```json
//! {"oneOf": [
//!   {"type": "object", "additionalProperties": false, "required": ["playbook", "params", "reasoning"],
//!    "properties": {"playbook": {"const": "restart_service"}, "params": {…entry schema…},
//!                   "reasoning": {"type": "string", "maxLength": 1000}}},
//!   {"type": "object", "additionalProperties": false, "required": ["playbook", "reasoning"],
//!    "properties": {"playbook": {"const": "escalate"}, "reasoning": {…}}}
//! ]}
//! ```
//!
//! Servers that decode with the schema (OpenAI structured outputs, vLLM, llama.cpp grammars)
//! then cannot even emit another playbook; the answer is validated anyway.

use serde_json::{Map, Value, json};

use crate::hygiene::{ESCALATE, ValidEntry};

/// Longest reasoning the schema asks for.
pub const MAX_REASONING_CHARS: u64 = 1000;

/// Builds the answer schema for `candidates` (in the given order).
pub fn answer_schema(candidates: &[&ValidEntry]) -> Value {
    let reasoning = json!({"type": "string", "maxLength": MAX_REASONING_CHARS});
    let mut branches: Vec<Value> = candidates
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let params = embed(&e.entry.parameters, &format!("#/oneOf/{i}/properties/params"));
            json!({
                "type": "object",
                "properties": {"playbook": {"const": e.name()}, "params": params, "reasoning": reasoning},
                "required": ["playbook", "params", "reasoning"],
                "additionalProperties": false
            })
        })
        .collect();
    branches.push(json!({
        "type": "object",
        "properties": {"playbook": {"const": ESCALATE}, "reasoning": reasoning},
        "required": ["playbook", "reasoning"],
        "additionalProperties": false
    }));
    json!({ "oneOf": branches })
}

/// An entry's params schema made fit to live at `pointer` inside the answer schema: root-relative
/// `$ref`s (`#/$defs/x`) are rebased, `$schema`/`$id` (which would change the base URI) are
/// dropped, and undeclared params are closed off, since validation refuses them anyway.
fn embed(schema: &Value, pointer: &str) -> Value {
    let mut out = schema.clone();
    rebase_refs(&mut out, pointer);
    if let Value::Object(obj) = &mut out {
        obj.remove("$schema");
        obj.remove("$id");
        obj.insert("additionalProperties".to_owned(), Value::Bool(false));
        if !obj.contains_key("properties") {
            obj.insert("properties".to_owned(), Value::Object(Map::new()));
        }
    }
    out
}

fn rebase_refs(v: &mut Value, pointer: &str) {
    match v {
        Value::Object(obj) => {
            for (k, child) in obj.iter_mut() {
                match child {
                    Value::String(r) if k == "$ref" => {
                        if let Some(rest) = r.strip_prefix('#') {
                            *r = format!("{pointer}{rest}");
                        }
                    }
                    _ => rebase_refs(child, pointer),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| rebase_refs(c, pointer)),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hygiene::check_catalogs;
    use crate::testing::{catalog, entry};
    use salve_api::Risk;

    fn schema_for(entries: Vec<salve_api::CatalogEntry>) -> Value {
        let r = check_catalogs(&[catalog("ops", entries)]);
        let c: Vec<&ValidEntry> = r.valid_entries().collect();
        answer_schema(&c)
    }

    fn valid(schema: &Value, answer: Value) -> bool {
        jsonschema::validator_for(schema)
            .expect("answer schema compiles")
            .is_valid(&answer)
    }

    fn two() -> Value {
        schema_for(vec![
            entry(
                "restart_service",
                Risk::Low,
                json!({"type": "object", "properties": {"service": {"type": "string", "enum": ["nginx"]}}, "required": ["service"]}),
            ),
            entry(
                "scale_pods",
                Risk::Medium,
                json!({"type": "object", "properties": {"replicas": {"type": "integer", "maximum": 10}}, "required": ["replicas"]}),
            ),
        ])
    }

    #[test]
    fn each_branch_carries_its_own_typed_params() {
        let s = two();
        assert_eq!(s["oneOf"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            s["oneOf"][0]["properties"]["playbook"],
            json!({"const": "restart_service"})
        );
        assert_eq!(
            s["oneOf"][1]["properties"]["params"]["properties"]["replicas"]["maximum"],
            json!(10)
        );
        assert!(valid(
            &s,
            json!({"playbook": "restart_service", "params": {"service": "nginx"}, "reasoning": "r"})
        ));
        assert!(valid(
            &s,
            json!({"playbook": "scale_pods", "params": {"replicas": 3}, "reasoning": "r"})
        ));
        // Params of one playbook do not fit another.
        assert!(!valid(
            &s,
            json!({"playbook": "scale_pods", "params": {"service": "nginx"}, "reasoning": "r"})
        ));
        assert!(!valid(
            &s,
            json!({"playbook": "scale_pods", "params": {"replicas": 30}, "reasoning": "r"})
        ));
    }

    #[test]
    fn the_escalate_branch_is_always_there_and_nothing_else_fits() {
        let s = two();
        assert!(valid(
            &s,
            json!({"playbook": "escalate", "reasoning": "unsure"})
        ));
        assert!(!valid(
            &s,
            json!({"playbook": "failover_database", "params": {}, "reasoning": "r"})
        ));
        assert!(!valid(
            &s,
            json!({"playbook": "escalate", "reasoning": "r", "command": "rm -rf /"})
        ));
        assert!(!valid(
            &s,
            json!({"playbook": "restart_service", "params": {"service": "nginx", "extra": 1}, "reasoning": "r"})
        ));
        let empty = answer_schema(&[]);
        assert_eq!(empty["oneOf"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn local_refs_in_entry_schemas_still_resolve_once_embedded() {
        let s = schema_for(vec![entry(
            "restart_service",
            Risk::Low,
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {"host": {"type": "string", "pattern": "^[a-z0-9-]+$"}},
                "properties": {"host": {"$ref": "#/$defs/host"}},
                "required": ["host"]
            }),
        )]);
        assert_eq!(
            s["oneOf"][0]["properties"]["params"]["properties"]["host"]["$ref"],
            json!("#/oneOf/0/properties/params/$defs/host")
        );
        assert!(valid(
            &s,
            json!({"playbook": "restart_service", "params": {"host": "web-3"}, "reasoning": ""})
        ));
        assert!(!valid(
            &s,
            json!({"playbook": "restart_service", "params": {"host": "WEB 3"}, "reasoning": ""})
        ));
    }
}
