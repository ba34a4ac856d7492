//! The rules fast path: decide without an LLM when the catalog already says how.
//!
//! An entry is *rules-complete* for an alert when its `paramsFromLabels` render every required
//! param from the alert and the rendered params pass the same validation an LLM answer must
//! pass (schema, declared params only, target related to the alert). An entry that declares no
//! params at all is trivially complete; one with params but no templates never is.
//!
//! The fast path applies when the alert has exactly one candidate and it is rules-complete. When
//! the LLM is unavailable (error, timeout, budget, disabled) the engine also falls back to the
//! rules when exactly one of several candidates is rules-complete.

use salve_api::AlertSnapshot;
use serde_json::{Map, Value};

use crate::hygiene::ValidEntry;
use crate::validate::{Refusal, check_params};

/// Why an entry is not rules-complete for an alert.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulesGap {
    /// The entry has params but no `paramsFromLabels`.
    #[error("entry {entry:?} has no paramsFromLabels")]
    NoTemplates {
        /// The entry.
        entry: String,
    },
    /// A required param has no template, or its template reads a label the alert lacks.
    #[error("entry {entry:?}: required param {param:?} cannot be filled from the alert")]
    Unfilled {
        /// The entry.
        entry: String,
        /// The param.
        param: String,
    },
    /// The rendered params do not validate.
    #[error("entry {entry:?}: rendered params are refused: {refusal}")]
    Refused {
        /// The entry.
        entry: String,
        /// Why.
        refusal: Refusal,
    },
}

/// A decision the rules can make: the entry and its validated params.
#[derive(Debug, Clone)]
pub struct RulesChoice<'a> {
    /// The chosen entry.
    pub entry: &'a ValidEntry,
    /// Params rendered from the alert, validated.
    pub params: Value,
}

/// The rules fast path: `Some` when `candidates` holds exactly one entry and it is
/// rules-complete for `alert`.
pub fn fast_path<'a>(
    candidates: &[&'a ValidEntry],
    alert: &AlertSnapshot,
) -> Option<RulesChoice<'a>> {
    match candidates {
        [only] => complete(only, alert).ok(),
        _ => None,
    }
}

/// The fallback when the LLM cannot be used: `Some` when exactly one candidate is
/// rules-complete.
pub fn fallback<'a>(
    candidates: &[&'a ValidEntry],
    alert: &AlertSnapshot,
) -> Option<RulesChoice<'a>> {
    let mut complete_ones = candidates.iter().filter_map(|e| complete(e, alert).ok());
    match (complete_ones.next(), complete_ones.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// Renders and validates `entry`'s params for `alert`.
pub fn complete<'a>(
    entry: &'a ValidEntry,
    alert: &AlertSnapshot,
) -> Result<RulesChoice<'a>, RulesGap> {
    let name = || entry.name().to_owned();
    if entry.templates.is_empty() && !entry.declared_params().is_empty() {
        return Err(RulesGap::NoTemplates { entry: name() });
    }
    let params = render(entry, alert);
    if let Some(missing) = entry
        .required_params()
        .into_iter()
        .find(|p| !params.contains_key(*p))
    {
        return Err(RulesGap::Unfilled {
            entry: name(),
            param: missing.to_owned(),
        });
    }
    let params = Value::Object(params);
    check_params(entry, &params, alert).map_err(|refusal| RulesGap::Refused {
        entry: name(),
        refusal,
    })?;
    Ok(RulesChoice { entry, params })
}

/// Renders every template whose fields exist on the alert, typed after the schema: a param
/// declared `integer`, `number` or `boolean` gets the parsed value when the text parses; a
/// param declared `array` gets a one-element array of the (typed) text. The text is never
/// split: a label holding "web-1,web-2" must not widen a remediation to more hosts than the
/// alert is about (the schema's item pattern then refuses it).
fn render(entry: &ValidEntry, alert: &AlertSnapshot) -> Map<String, Value> {
    let mut params = Map::new();
    for (param, template) in &entry.templates {
        let Some(text) = template.render(alert) else {
            continue;
        };
        let value = match entry.param_type(param) {
            Some("array") => Value::Array(vec![typed(entry.item_type(param), text)]),
            other => typed(other, text),
        };
        params.insert(param.clone(), value);
    }
    params
}

/// `text` as the JSON type `ty` when it parses as one; otherwise the string.
fn typed(ty: Option<&str>, text: String) -> Value {
    let parsed = match ty {
        Some("integer") => text.parse::<i64>().map(Value::from).ok(),
        Some("number") => text
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number)),
        Some("boolean") => text.parse::<bool>().map(Value::Bool).ok(),
        _ => None,
    };
    parsed.unwrap_or(Value::String(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hygiene::check_catalogs;
    use crate::testing::{alert, catalog, entry};
    use salve_api::Risk;
    use serde_json::json;

    fn disk_entry() -> salve_api::CatalogEntry {
        let mut e = entry(
            "clear_disk_space",
            Risk::Low,
            json!({
                "type": "object",
                "properties": {
                    "host": {"type": "string", "pattern": "^[a-z0-9.-]+$"},
                    "min_free_gb": {"type": "integer", "minimum": 1, "maximum": 100}
                },
                "required": ["host"]
            }),
        );
        e.target_param = Some("host".into());
        e.params_from_labels
            .insert("host".into(), "{{ labels.instance | host }}".into());
        e
    }

    fn web3() -> AlertSnapshot {
        alert(
            "NodeFilesystemSpaceFillingUp",
            &[("instance", "web-3:9100"), ("mountpoint", "/")],
            &[],
        )
    }

    #[test]
    fn one_candidate_with_complete_templates_is_decided_by_the_rules() {
        let r = check_catalogs(&[catalog("ops", vec![disk_entry()])]);
        let c = r.candidates(&web3());
        let choice = fast_path(&c, &web3()).expect("rules decide");
        assert_eq!(choice.entry.name(), "clear_disk_space");
        assert_eq!(choice.params, json!({"host": "web-3"}));
    }

    #[test]
    fn templated_integers_are_typed_after_the_schema() {
        let mut e = disk_entry();
        e.params_from_labels
            .insert("min_free_gb".into(), "{{ labels.min_free_gb }}".into());
        let r = check_catalogs(&[catalog("ops", vec![e])]);
        let a = alert(
            "X",
            &[("instance", "web-3:9100"), ("min_free_gb", "5")],
            &[],
        );
        let choice = complete(&r.catalogs[0].valid[0], &a).expect("complete");
        assert_eq!(choice.params, json!({"host": "web-3", "min_free_gb": 5}));
    }

    #[test]
    fn array_params_get_a_one_element_array_and_are_never_split() {
        let mut e = disk_entry();
        e.parameters = json!({"type": "object", "additionalProperties": false,
            "required": ["target_hosts", "ports"],
            "properties": {
                "target_hosts": {"type": "array", "minItems": 1, "maxItems": 1,
                    "items": {"type": "string", "pattern": "^[a-z0-9.-]+$"}},
                "ports": {"type": "array", "items": {"type": "integer"}}}});
        e.params_from_labels.clear();
        e.target_param = Some("target_hosts".into());
        e.params_from_labels
            .insert("target_hosts".into(), "{{ labels.instance | host }}".into());
        e.params_from_labels
            .insert("ports".into(), "{{ labels.port }}".into());
        let r = check_catalogs(&[catalog("ops", vec![e])]);
        assert!(
            r.catalogs[0].problems.is_empty(),
            "{:?}",
            r.catalogs[0].problems
        );
        let entry = &r.catalogs[0].valid[0];
        let a = alert("X", &[("instance", "web-3:9100"), ("port", "9100")], &[]);
        let choice = complete(entry, &a).expect("complete");
        assert_eq!(
            choice.params,
            json!({"target_hosts": ["web-3"], "ports": [9100]})
        );
        // A label that tries to name several hosts stays one (invalid) item: refused.
        let wide = alert("X", &[("instance", "web-3,db-1"), ("port", "1")], &[]);
        assert!(matches!(
            complete(entry, &wide),
            Err(RulesGap::Refused { .. })
        ));
    }

    #[test]
    fn two_candidates_are_never_decided_by_the_fast_path() {
        let mut other = disk_entry();
        other.name = "rotate_logs".into();
        let r = check_catalogs(&[catalog("ops", vec![disk_entry(), other])]);
        let c = r.candidates(&web3());
        assert_eq!(c.len(), 2);
        assert!(fast_path(&c, &web3()).is_none());
        assert!(
            fallback(&c, &web3()).is_none(),
            "two complete candidates: the rules cannot choose"
        );
    }

    #[test]
    fn the_fallback_takes_the_only_complete_candidate_among_several() {
        let mut needs_llm = disk_entry();
        needs_llm.name = "rotate_logs".into();
        needs_llm.params_from_labels.clear();
        let r = check_catalogs(&[catalog("ops", vec![disk_entry(), needs_llm])]);
        let c = r.candidates(&web3());
        assert!(fast_path(&c, &web3()).is_none());
        assert_eq!(
            fallback(&c, &web3()).expect("one complete").entry.name(),
            "clear_disk_space"
        );
    }

    #[test]
    fn a_missing_label_leaves_a_required_param_unfilled() {
        let r = check_catalogs(&[catalog("ops", vec![disk_entry()])]);
        let a = alert("NodeFilesystemSpaceFillingUp", &[], &[]);
        let gap = complete(&r.catalogs[0].valid[0], &a).expect_err("no instance label");
        assert_eq!(
            gap,
            RulesGap::Unfilled {
                entry: "clear_disk_space".into(),
                param: "host".into()
            }
        );
    }

    #[test]
    fn rendered_params_that_violate_the_schema_are_not_a_rules_decision() {
        let r = check_catalogs(&[catalog("ops", vec![disk_entry()])]);
        let a = alert("X", &[("instance", "WEB_3;reboot:9100")], &[]);
        let gap = complete(&r.catalogs[0].valid[0], &a).expect_err("pattern");
        assert!(matches!(gap, RulesGap::Refused { .. }), "{gap}");
        assert!(gap.to_string().contains("InvalidParams"), "{gap}");
    }

    #[test]
    fn an_entry_with_params_but_no_templates_needs_the_llm() {
        let mut e = disk_entry();
        e.params_from_labels.clear();
        let r = check_catalogs(&[catalog("ops", vec![e])]);
        assert_eq!(
            complete(&r.catalogs[0].valid[0], &web3()).expect_err("no templates"),
            RulesGap::NoTemplates {
                entry: "clear_disk_space".into()
            }
        );
    }

    #[test]
    fn an_entry_without_params_is_trivially_complete() {
        let e = entry("reload_prometheus", Risk::Low, json!({"type": "object"}));
        let r = check_catalogs(&[catalog("ops", vec![e])]);
        let choice = complete(&r.catalogs[0].valid[0], &web3()).expect("complete");
        assert_eq!(choice.params, json!({}));
    }
}
