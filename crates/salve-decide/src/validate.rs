//! Validation of every answer, always: the LLM only ever *selects*.
//!
//! An answer is accepted only when it is one JSON object with the fields `playbook`, `params`
//! and `reasoning` and nothing else; names a candidate (or `escalate`); carries params that
//! are declared by, and validate against, that candidate's JSON Schema; and targets something the
//! alert is about. Everything else is a [`Refusal`] whose text (`Code: detail`) goes to
//! `Decision.validation`. Risk, playbook path, image and service account are never read from
//! the answer: they come from the catalog entry.

use std::collections::BTreeSet;
use std::fmt;

use salve_api::AlertSnapshot;
use serde_json::{Map, Value};

use crate::hygiene::{ESCALATE, ValidEntry, json_type};
use crate::template::host;
use crate::truncate;

/// Longest detail kept in a refusal (the status field holds 2 KiB).
const MAX_DETAIL: usize = 1536;
/// Longest echo of answer text inside a refusal.
const MAX_ECHO: usize = 80;

/// Why an answer (or rendered params) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCode {
    /// No choice, or no content.
    EmptyAnswer,
    /// The model declined (OpenAI `refusal`).
    ModelRefused,
    /// The answer is longer than the engine accepts.
    OversizedAnswer,
    /// The model stopped at `max_tokens` and the answer does not parse.
    TruncatedAnswer,
    /// Not a JSON object with a string `playbook`.
    MalformedAnswer,
    /// A field other than `playbook`, `params`, `reasoning`.
    UnexpectedField,
    /// The playbook is not a candidate for this alert.
    UnknownPlaybook,
    /// The params do not validate against the entry's schema.
    InvalidParams,
    /// A param the entry's schema does not declare.
    UnexpectedParam,
    /// The entry's target param is absent.
    TargetMissing,
    /// The target is not something the alert is about.
    TargetNotRelated,
}

impl RefusalCode {
    /// PascalCase name (also the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::EmptyAnswer => "EmptyAnswer",
            RefusalCode::ModelRefused => "ModelRefused",
            RefusalCode::OversizedAnswer => "OversizedAnswer",
            RefusalCode::TruncatedAnswer => "TruncatedAnswer",
            RefusalCode::MalformedAnswer => "MalformedAnswer",
            RefusalCode::UnexpectedField => "UnexpectedField",
            RefusalCode::UnknownPlaybook => "UnknownPlaybook",
            RefusalCode::InvalidParams => "InvalidParams",
            RefusalCode::UnexpectedParam => "UnexpectedParam",
            RefusalCode::TargetMissing => "TargetMissing",
            RefusalCode::TargetNotRelated => "TargetNotRelated",
        }
    }
}

/// A refused answer: a code and a precise detail. Displays as `Code: detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What kind of problem.
    pub code: RefusalCode,
    /// Exactly what is wrong.
    pub detail: String,
}

impl Refusal {
    fn new(code: RefusalCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: truncate(&detail.into(), MAX_DETAIL),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl std::error::Error for Refusal {}

/// An answer that parsed: the fields the model may set, nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// A candidate's name, or `escalate`.
    pub playbook: String,
    /// The params (absent: none given).
    pub params: Option<Value>,
    /// The model's stated reasoning.
    pub reasoning: String,
}

/// What a valid answer means.
#[derive(Debug, Clone)]
pub enum Verdict<'a> {
    /// Run this entry with these params.
    Select {
        /// The chosen candidate.
        entry: &'a ValidEntry,
        /// Its validated params.
        params: Value,
        /// The model's reasoning.
        reasoning: String,
    },
    /// Hand the incident to a human.
    Escalate {
        /// The model's reasoning.
        reasoning: String,
    },
}

/// Parses the raw answer text: one JSON object (a single surrounding ```json fence is
/// tolerated), at most `max_bytes` long, with only the allowed fields.
pub fn parse_answer(content: &str, max_bytes: usize, truncated: bool) -> Result<Answer, Refusal> {
    if content.len() > max_bytes {
        return Err(Refusal::new(
            RefusalCode::OversizedAnswer,
            format!(
                "answer is {} bytes; at most {max_bytes} are accepted",
                content.len()
            ),
        ));
    }
    let text = strip_fence(content.trim());
    if text.is_empty() {
        return Err(Refusal::new(
            RefusalCode::EmptyAnswer,
            "the answer has no content",
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let code = if truncated {
            RefusalCode::TruncatedAnswer
        } else {
            RefusalCode::MalformedAnswer
        };
        let why = if truncated {
            "the model hit max_tokens and "
        } else {
            ""
        };
        Refusal::new(
            code,
            format!("{why}the answer is not JSON ({e}): {}", echo(text)),
        )
    })?;
    let Value::Object(mut obj) = value else {
        return Err(Refusal::new(
            RefusalCode::MalformedAnswer,
            format!("the answer is a JSON {}, not an object", json_type(&value)),
        ));
    };
    let extra: Vec<String> = obj
        .keys()
        .filter(|k| !matches!(k.as_str(), "playbook" | "params" | "reasoning"))
        .map(|k| echo(k))
        .collect();
    if !extra.is_empty() {
        return Err(Refusal::new(
            RefusalCode::UnexpectedField,
            format!(
                "the answer sets {}; only playbook, params and reasoning are allowed",
                extra.join(", ")
            ),
        ));
    }
    let playbook = match obj.remove("playbook") {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(Refusal::new(
                RefusalCode::MalformedAnswer,
                format!("playbook must be a string, found {}", json_type(&other)),
            ));
        }
        None => {
            return Err(Refusal::new(
                RefusalCode::MalformedAnswer,
                "the answer has no playbook field",
            ));
        }
    };
    let reasoning = match obj.remove("reasoning") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    };
    Ok(Answer {
        playbook,
        params: obj.remove("params"),
        reasoning,
    })
}

/// Checks a parsed answer against the candidates and the alert.
pub fn validate_answer<'a>(
    answer: Answer,
    candidates: &[&'a ValidEntry],
    alert: &AlertSnapshot,
) -> Result<Verdict<'a>, Refusal> {
    if answer.playbook == ESCALATE {
        return Ok(Verdict::Escalate {
            reasoning: answer.reasoning,
        });
    }
    let Some(entry) = candidates
        .iter()
        .copied()
        .find(|e| e.name() == answer.playbook)
    else {
        let names: Vec<&str> = candidates.iter().map(|e| e.name()).collect();
        return Err(Refusal::new(
            RefusalCode::UnknownPlaybook,
            format!(
                "{} is not a candidate for this alert (candidates: {}, or escalate)",
                echo(&answer.playbook),
                names.join(", ")
            ),
        ));
    };
    let params = answer.params.unwrap_or_else(|| Value::Object(Map::new()));
    check_params(entry, &params, alert)?;
    Ok(Verdict::Select {
        entry,
        params,
        reasoning: answer.reasoning,
    })
}

/// Checks params for `entry`: an object, only declared params, valid against the schema (the
/// jsonschema errors are recorded verbatim), target related to the alert.
pub fn check_params(
    entry: &ValidEntry,
    params: &Value,
    alert: &AlertSnapshot,
) -> Result<(), Refusal> {
    let Value::Object(obj) = params else {
        return Err(Refusal::new(
            RefusalCode::InvalidParams,
            format!("params must be a JSON object, found {}", json_type(params)),
        ));
    };
    let declared = entry.declared_params();
    let undeclared: Vec<String> = obj
        .keys()
        .filter(|k| !declared.contains(k.as_str()))
        .map(|k| echo(k))
        .collect();
    if !undeclared.is_empty() {
        return Err(Refusal::new(
            RefusalCode::UnexpectedParam,
            format!(
                "{} declares no param {}",
                entry.name(),
                undeclared.join(", ")
            ),
        ));
    }
    let errors: Vec<String> = entry
        .validator
        .iter_errors(params)
        .map(|e| {
            let at = e.instance_path().to_string();
            format!("{}: {e}", if at.is_empty() { "/".to_owned() } else { at })
        })
        .collect();
    if !errors.is_empty() {
        return Err(Refusal::new(
            RefusalCode::InvalidParams,
            format!(
                "params for {} do not match its schema: {}",
                entry.name(),
                errors.join("; ")
            ),
        ));
    }
    check_target(entry, obj, alert)
}

/// Checks that the entry's target param names something the alert is about: the host of the
/// alert's `instance` label, or the value of another label (`deployment`, `service`…).
pub fn check_target(
    entry: &ValidEntry,
    params: &Map<String, Value>,
    alert: &AlertSnapshot,
) -> Result<(), Refusal> {
    let Some(param) = entry.entry.target_param.as_deref() else {
        return Ok(());
    };
    if !entry.entry.target_from_alert {
        return Ok(());
    }
    let Some(value) = params.get(param) else {
        return Err(Refusal::new(
            RefusalCode::TargetMissing,
            format!("target param {param:?} of {} is missing", entry.name()),
        ));
    };
    let targets: Vec<String> = match value {
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Array(items) if !items.is_empty() => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => {
                        return Err(Refusal::new(
                            RefusalCode::TargetNotRelated,
                            format!(
                                "target param {param:?} must hold strings, found {}",
                                json_type(other)
                            ),
                        ));
                    }
                }
            }
            out
        }
        other => {
            return Err(Refusal::new(
                RefusalCode::TargetNotRelated,
                format!(
                    "target param {param:?} must be a string, found {}",
                    json_type(other)
                ),
            ));
        }
    };
    let related = related_values(alert);
    for t in &targets {
        if !related.contains(t.as_str()) {
            let instance_host = alert.labels.get("instance").map(|i| host(i));
            return Err(Refusal::new(
                RefusalCode::TargetNotRelated,
                format!(
                    "target param {param:?} = {} is neither the host of the alert's instance label ({}) nor the value of another alert label",
                    echo(t),
                    instance_host
                        .map_or_else(|| "no instance label".to_owned(), |h| format!("{h:?}")),
                ),
            ));
        }
    }
    Ok(())
}

/// What a target may equal: the host of `instance` and every non-empty label value except the
/// alert's name.
fn related_values(alert: &AlertSnapshot) -> BTreeSet<&str> {
    let mut out: BTreeSet<&str> = alert
        .labels
        .iter()
        .filter(|(k, v)| *k != "alertname" && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .collect();
    if let Some(instance) = alert.labels.get("instance") {
        out.insert(host(instance));
    }
    out
}

fn strip_fence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let Some(body) = rest.strip_suffix("```") else {
        return text;
    };
    // Drop an info string such as `json` on the opening line.
    match body.split_once('\n') {
        Some((info, inner)) if !info.trim_start().starts_with('{') => inner.trim(),
        _ => body.trim(),
    }
}

/// A short, quoted, escaped echo of untrusted text for a refusal message.
fn echo(s: &str) -> String {
    format!("{:?}", truncate(s, MAX_ECHO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hygiene::{CatalogReport, check_catalogs};
    use crate::testing::{alert, catalog, entry};
    use salve_api::Risk;
    use serde_json::json;

    fn report() -> CatalogReport {
        let mut restart = entry(
            "restart_service",
            Risk::Low,
            json!({
                "type": "object",
                "properties": {
                    "host": {"type": "string", "pattern": "^[a-z0-9.-]+$", "maxLength": 63},
                    "service": {"type": "string", "enum": ["nginx", "postgresql"]}
                },
                "required": ["host", "service"]
            }),
        );
        restart.target_param = Some("host".into());
        let mut scale = entry(
            "scale_pods",
            Risk::Medium,
            json!({
                "type": "object",
                "properties": {
                    "deployment": {"type": "string"},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 20}
                },
                "required": ["deployment", "replicas"]
            }),
        );
        scale.target_param = Some("deployment".into());
        check_catalogs(&[catalog("ops", vec![restart, scale])])
    }

    fn web3() -> AlertSnapshot {
        alert(
            "ServiceDown",
            &[("instance", "web-3:9100"), ("deployment", "checkout")],
            &[],
        )
    }

    fn judge(answer: &str) -> Result<String, String> {
        let r = report();
        let a = web3();
        let c = r.candidates(&a);
        parse_answer(answer, 16 * 1024, false)
            .and_then(|ans| validate_answer(ans, &c, &a))
            .map(|v| match v {
                Verdict::Select { entry, params, .. } => format!("{} {params}", entry.name()),
                Verdict::Escalate { reasoning } => format!("escalate: {reasoning}"),
            })
            .map_err(|r| r.to_string())
    }

    #[test]
    fn a_candidate_with_valid_params_and_a_related_target_is_accepted() {
        let ok = judge(
            r#"{"playbook":"restart_service","params":{"host":"web-3","service":"nginx"},"reasoning":"nginx down"}"#,
        );
        assert_eq!(
            ok,
            Ok(r#"restart_service {"host":"web-3","service":"nginx"}"#.to_owned())
        );
    }

    #[test]
    fn escalate_is_always_a_valid_choice() {
        assert_eq!(
            judge(r#"{"playbook":"escalate","reasoning":"unsure"}"#),
            Ok("escalate: unsure".to_owned())
        );
    }

    #[test]
    fn an_unknown_playbook_is_refused_naming_the_candidates() {
        assert_eq!(
            judge(r#"{"playbook":"failover_database","params":{"cluster_name":"prod"},"reasoning":"x"}"#),
            Err("UnknownPlaybook: \"failover_database\" is not a candidate for this alert (candidates: restart_service, scale_pods, or escalate)".to_owned())
        );
    }

    #[test]
    fn params_violating_the_schema_are_refused_with_the_jsonschema_error() {
        let err = judge(r#"{"playbook":"restart_service","params":{"host":"web-3","service":"sshd"},"reasoning":""}"#)
            .expect_err("enum");
        assert!(
            err.starts_with(
                "InvalidParams: params for restart_service do not match its schema: /service: "
            ),
            "{err}"
        );
        assert!(err.contains("\"sshd\" is not one of"), "{err}");
        let err = judge(r#"{"playbook":"scale_pods","params":{"deployment":"checkout","replicas":500},"reasoning":""}"#)
            .expect_err("maximum");
        assert!(
            err.contains("/replicas: 500 is greater than the maximum of 20"),
            "{err}"
        );
        let err =
            judge(r#"{"playbook":"scale_pods","params":{"deployment":"checkout"},"reasoning":""}"#)
                .expect_err("required");
        assert!(
            err.contains("/: \"replicas\" is a required property"),
            "{err}"
        );
        let err =
            judge(r#"{"playbook":"scale_pods","params":[1],"reasoning":""}"#).expect_err("array");
        assert_eq!(
            err,
            "InvalidParams: params must be a JSON object, found array"
        );
    }

    #[test]
    fn undeclared_params_are_refused_even_when_the_schema_allows_them() {
        let err = judge(r#"{"playbook":"scale_pods","params":{"deployment":"checkout","replicas":2,"ansible_ssh_common_args":"-o ProxyCommand=sh"},"reasoning":""}"#)
            .expect_err("extra param");
        assert_eq!(
            err,
            "UnexpectedParam: scale_pods declares no param \"ansible_ssh_common_args\""
        );
    }

    #[test]
    fn a_target_unrelated_to_the_alert_is_refused() {
        let err = judge(r#"{"playbook":"restart_service","params":{"host":"db-1","service":"postgresql"},"reasoning":""}"#)
            .expect_err("target");
        assert_eq!(
            err,
            "TargetNotRelated: target param \"host\" = \"db-1\" is neither the host of the alert's instance label (\"web-3\") nor the value of another alert label"
        );
        // Another label of the alert is a fine target.
        assert!(judge(r#"{"playbook":"scale_pods","params":{"deployment":"checkout","replicas":3},"reasoning":""}"#).is_ok());
        // The alert's name is not a target.
        let err = judge(r#"{"playbook":"scale_pods","params":{"deployment":"ServiceDown","replicas":3},"reasoning":""}"#)
            .expect_err("alertname");
        assert!(err.starts_with("TargetNotRelated"), "{err}");
    }

    #[test]
    fn a_target_is_not_checked_when_the_entry_opts_out() {
        let mut r = report();
        for e in &mut r.catalogs[0].valid {
            e.entry.target_from_alert = false;
        }
        let a = web3();
        let c = r.candidates(&a);
        let ans = parse_answer(
            r#"{"playbook":"restart_service","params":{"host":"db-1","service":"nginx"}}"#,
            1024,
            false,
        )
        .expect("parses");
        assert!(validate_answer(ans, &c, &a).is_ok());
    }

    #[test]
    fn fields_beyond_playbook_params_reasoning_are_refused() {
        let err = judge(r#"{"playbook":"restart_service","params":{"host":"web-3","service":"nginx"},"risk":"low","command":"rm -rf /"}"#)
            .expect_err("extra fields");
        assert_eq!(
            err,
            "UnexpectedField: the answer sets \"command\", \"risk\"; only playbook, params and reasoning are allowed"
        );
    }

    #[test]
    fn prose_and_malformed_json_are_refused() {
        let err = judge("I think you should restart nginx on web-3.").expect_err("prose");
        assert!(err.starts_with("MalformedAnswer: the answer is not JSON (expected value at line 1 column 1): \"I think"), "{err}");
        assert_eq!(
            judge("[1,2]"),
            Err("MalformedAnswer: the answer is a JSON array, not an object".to_owned())
        );
        assert_eq!(
            judge(r#"{"reasoning":"x"}"#),
            Err("MalformedAnswer: the answer has no playbook field".to_owned())
        );
        assert_eq!(
            judge(r#"{"playbook":7}"#),
            Err("MalformedAnswer: playbook must be a string, found number".to_owned())
        );
        assert_eq!(
            judge("   "),
            Err("EmptyAnswer: the answer has no content".to_owned())
        );
    }

    #[test]
    fn a_truncated_answer_says_so() {
        let err = parse_answer(r#"{"playbook":"restart_se"#, 1024, true).expect_err("truncated");
        assert_eq!(err.code, RefusalCode::TruncatedAnswer);
        assert!(
            err.detail
                .starts_with("the model hit max_tokens and the answer is not JSON"),
            "{err}"
        );
    }

    #[test]
    fn an_oversized_answer_is_refused_before_parsing() {
        let big = format!(
            r#"{{"playbook":"escalate","reasoning":"{}"}}"#,
            "a".repeat(20_000)
        );
        let err = parse_answer(&big, 16 * 1024, false).expect_err("too big");
        assert_eq!(
            err.to_string(),
            format!(
                "OversizedAnswer: answer is {} bytes; at most 16384 are accepted",
                big.len()
            )
        );
    }

    #[test]
    fn a_fenced_json_answer_is_read() {
        let ok = judge("```json\n{\"playbook\":\"escalate\",\"reasoning\":\"r\"}\n```");
        assert_eq!(ok, Ok("escalate: r".to_owned()));
    }

    #[test]
    fn echoes_of_hostile_names_are_short_and_escaped() {
        let name = format!("x\n\u{202e}{}", "y".repeat(500));
        let err = judge(&json!({"playbook": name}).to_string()).expect_err("unknown");
        assert!(!err.contains('\n') && !err.contains('\u{202e}'), "{err}");
        assert!(err.len() < 300, "{}", err.len());
    }
}
