//! Catalog hygiene: compile every PlaybookCatalog entry once, leave broken ones out of the
//! candidates, and say precisely why (the controller writes this to the catalog's status).
//!
//! An entry is left out when its parameter schema is not a compilable `type: object` JSON
//! Schema (`InvalidSchema`), a matcher does not compile (`InvalidMatcher`), a `paramsFromLabels`
//! template does not parse or names a param the schema lacks (`InvalidTemplate`), or its name is
//! also used by another entry, in another catalog or the same one, or is the reserved
//! `escalate` (`NameCollision`; every entry with that name is left out, so the outcome does not
//! depend on which catalog the API server lists first).

use std::collections::{BTreeMap, BTreeSet};

use salve_api::{AlertSnapshot, CatalogEntry, EntryProblem, PlaybookCatalog};
use serde_json::Value;

use crate::matching::CompiledMatch;
use crate::template::Template;
use crate::truncate;

/// Reason: the parameter schema is unusable.
pub const INVALID_SCHEMA: &str = "InvalidSchema";
/// Reason: a label matcher does not compile.
pub const INVALID_MATCHER: &str = "InvalidMatcher";
/// Reason: a `paramsFromLabels` template is unusable.
pub const INVALID_TEMPLATE: &str = "InvalidTemplate";
/// Reason: the entry's name is not unique (or is reserved).
pub const NAME_COLLISION: &str = "NameCollision";
/// The name of the escalate choice; no entry may use it.
pub const ESCALATE: &str = "escalate";

/// Longest `EntryProblem.message` the status accepts.
const MAX_MESSAGE: usize = 1024;

/// A catalog entry that passed every check, compiled for matching, rendering and validation.
#[derive(Debug, Clone)]
pub struct ValidEntry {
    /// Name of the PlaybookCatalog holding the entry.
    pub catalog: String,
    /// The entry as written.
    pub entry: CatalogEntry,
    pub(crate) matcher: CompiledMatch,
    pub(crate) validator: jsonschema::Validator,
    pub(crate) templates: BTreeMap<String, Template>,
}

impl ValidEntry {
    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// Whether the entry's `match` selects `alert`.
    pub fn selects(&self, alert: &AlertSnapshot) -> bool {
        self.matcher.selects(alert)
    }

    /// Names of the params the schema declares (`properties`).
    pub fn declared_params(&self) -> BTreeSet<&str> {
        declared(&self.entry.parameters)
    }

    /// Names of the params the schema requires.
    pub fn required_params(&self) -> Vec<&str> {
        self.entry
            .parameters
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// The declared JSON type of param `name` (`"integer"`, `"string"`…), when it is a single one.
    pub(crate) fn param_type(&self, name: &str) -> Option<&str> {
        self.entry
            .parameters
            .get("properties")?
            .get(name)?
            .get("type")?
            .as_str()
    }

    /// The declared `items.type` of an array param.
    pub(crate) fn item_type(&self, name: &str) -> Option<&str> {
        self.entry
            .parameters
            .get("properties")?
            .get(name)?
            .get("items")?
            .get("type")?
            .as_str()
    }
}

/// The result of checking one catalog.
#[derive(Debug, Clone)]
pub struct CatalogCheck {
    /// The catalog's namespace.
    pub namespace: Option<String>,
    /// The catalog's name.
    pub name: String,
    /// The catalog's `metadata.generation` the check is for (for `status.observedGeneration`).
    pub generation: Option<i64>,
    /// Entries usable as candidates, in catalog order.
    pub valid: Vec<ValidEntry>,
    /// One item per problem found, in catalog order (an entry may have several).
    pub problems: Vec<EntryProblem>,
}

/// The result of checking all catalogs: one [`CatalogCheck`] per input catalog, in input order.
#[derive(Debug, Clone, Default)]
pub struct CatalogReport {
    /// Per catalog.
    pub catalogs: Vec<CatalogCheck>,
}

impl CatalogReport {
    /// Every valid entry, across catalogs.
    pub fn valid_entries(&self) -> impl Iterator<Item = &ValidEntry> {
        self.catalogs.iter().flat_map(|c| c.valid.iter())
    }

    /// The candidates for `alert`: valid entries whose `match` selects it, sorted by name so the
    /// prompt (and its hash) does not depend on listing order.
    pub fn candidates(&self, alert: &AlertSnapshot) -> Vec<&ValidEntry> {
        let mut out: Vec<&ValidEntry> = self.valid_entries().filter(|e| e.selects(alert)).collect();
        out.sort_by(|a, b| a.name().cmp(b.name()));
        out
    }
}

/// Checks every catalog. Pure: compiles schemas, matchers and templates, finds name collisions
/// across catalogs, and never touches the network (remote `$ref`s fail to resolve).
pub fn check_catalogs(catalogs: &[PlaybookCatalog]) -> CatalogReport {
    // Who uses which name, to find collisions: name -> catalog ids (one per occurrence).
    let mut owners: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for c in catalogs {
        for e in &c.spec.entries {
            owners
                .entry(e.name.as_str())
                .or_default()
                .push(catalog_id(c));
        }
    }

    let checks = catalogs
        .iter()
        .map(|c| {
            let me = catalog_id(c);
            let name = c.metadata.name.clone().unwrap_or_default();
            let mut valid = Vec::new();
            let mut problems = Vec::new();
            for e in &c.spec.entries {
                let mut mine = Vec::new();
                if let Some(p) = collision(
                    e,
                    &me,
                    owners
                        .get(e.name.as_str())
                        .map(Vec::as_slice)
                        .unwrap_or(&[]),
                ) {
                    mine.push(p);
                }
                match check_entry(&name, e) {
                    Ok(v) if mine.is_empty() => valid.push(v),
                    Ok(_) => {}
                    Err(mut ps) => mine.append(&mut ps),
                }
                problems.append(&mut mine);
            }
            CatalogCheck {
                namespace: c.metadata.namespace.clone(),
                name,
                generation: c.metadata.generation,
                valid,
                problems,
            }
        })
        .collect();
    CatalogReport { catalogs: checks }
}

/// Checks one entry on its own (everything but name collisions). `catalog` is recorded in the
/// compiled entry.
pub fn check_entry(catalog: &str, e: &CatalogEntry) -> Result<ValidEntry, Vec<EntryProblem>> {
    let mut problems = Vec::new();
    let validator = match compile_schema(e) {
        Ok(v) => Some(v),
        Err(message) => {
            problems.push(problem(e, INVALID_SCHEMA, message));
            None
        }
    };
    let matcher = match CompiledMatch::compile(&e.match_) {
        Ok(m) => Some(m),
        Err(err) => {
            problems.push(problem(e, INVALID_MATCHER, err.to_string()));
            None
        }
    };
    let declared = declared(&e.parameters);
    let mut templates = BTreeMap::new();
    for (param, text) in &e.params_from_labels {
        match Template::parse(text) {
            Ok(_) if !declared.contains(param.as_str()) => problems.push(problem(
                e,
                INVALID_TEMPLATE,
                format!(
                    "paramsFromLabels.{param}: the parameters schema has no property {param:?}"
                ),
            )),
            Ok(t) => {
                templates.insert(param.clone(), t);
            }
            Err(err) => problems.push(problem(
                e,
                INVALID_TEMPLATE,
                format!("paramsFromLabels.{param}: {err}"),
            )),
        }
    }
    match (validator, matcher, problems.is_empty()) {
        (Some(validator), Some(matcher), true) => Ok(ValidEntry {
            catalog: catalog.to_owned(),
            entry: e.clone(),
            matcher,
            validator,
            templates,
        }),
        _ => Err(problems),
    }
}

fn compile_schema(e: &CatalogEntry) -> Result<jsonschema::Validator, String> {
    let schema = &e.parameters;
    let Some(obj) = schema.as_object() else {
        return Err(format!(
            "parameters must be a JSON Schema object, found {}",
            json_type(schema)
        ));
    };
    if obj.get("type").and_then(Value::as_str) != Some("object") {
        return Err("parameters must be a JSON Schema with type: object".to_owned());
    }
    if let Some(props) = obj.get("properties")
        && !props.is_object()
    {
        return Err(format!(
            "parameters.properties must be an object, found {}",
            json_type(props)
        ));
    }
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .map_err(|err| {
            format!(
                "parameters is not a valid JSON Schema: {err} (at {})",
                err.schema_path()
            )
        })?;
    if let Some(target) = &e.target_param
        && !declared(schema).contains(target.as_str())
    {
        return Err(format!(
            "targetParam {target:?} is not a property of parameters"
        ));
    }
    Ok(validator)
}

fn collision(e: &CatalogEntry, me: &str, owners: &[String]) -> Option<EntryProblem> {
    if e.name == ESCALATE {
        return Some(problem(
            e,
            NAME_COLLISION,
            format!(
                "entry name {ESCALATE:?} is reserved for handing the incident to a human; rename the entry"
            ),
        ));
    }
    if owners.len() < 2 {
        return None;
    }
    let here = owners.iter().filter(|o| *o == me).count();
    let elsewhere: BTreeSet<&str> = owners
        .iter()
        .map(String::as_str)
        .filter(|o| *o != me)
        .collect();
    let message = match (here, elsewhere.is_empty()) {
        (n, true) => format!(
            "entry name {:?} is defined {n} times in this catalog; every entry with this name is left out until names are unique",
            e.name
        ),
        (_, false) => format!(
            "entry name {:?} is also defined in catalog {}; every entry with this name is left out until names are unique",
            e.name,
            elsewhere.into_iter().collect::<Vec<_>>().join(", ")
        ),
    };
    Some(problem(e, NAME_COLLISION, message))
}

fn problem(e: &CatalogEntry, reason: &str, message: String) -> EntryProblem {
    EntryProblem {
        entry: truncate(&e.name, 63),
        reason: reason.to_owned(),
        message: truncate(&message, MAX_MESSAGE),
    }
}

fn catalog_id(c: &PlaybookCatalog) -> String {
    let name = c.metadata.name.as_deref().unwrap_or_default();
    match c.metadata.namespace.as_deref() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

fn declared(schema: &Value) -> BTreeSet<&str> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{alert, catalog, entry};
    use salve_api::{LabelMatcher, MatchOperator, Risk};
    use serde_json::json;

    fn host_schema() -> Value {
        json!({"type": "object", "properties": {"host": {"type": "string", "pattern": "^[a-z0-9.-]+$"}}, "required": ["host"]})
    }

    fn reasons(check: &CatalogCheck) -> Vec<(&str, &str)> {
        check
            .problems
            .iter()
            .map(|p| (p.entry.as_str(), p.reason.as_str()))
            .collect()
    }

    #[test]
    fn a_valid_catalog_has_no_problems() {
        let r = check_catalogs(&[catalog(
            "ops",
            vec![entry("restart_service", Risk::Low, host_schema())],
        )]);
        assert_eq!(r.catalogs[0].valid.len(), 1);
        assert!(r.catalogs[0].problems.is_empty());
        assert_eq!(r.catalogs[0].valid[0].catalog, "ops");
    }

    #[test]
    fn a_schema_that_is_not_type_object_is_invalid() {
        let r = check_catalogs(&[catalog(
            "ops",
            vec![entry("a", Risk::Low, json!({"type": "string"}))],
        )]);
        assert_eq!(reasons(&r.catalogs[0]), vec![("a", INVALID_SCHEMA)]);
        assert!(r.catalogs[0].valid.is_empty());
        let r = check_catalogs(&[catalog(
            "ops",
            vec![entry("a", Risk::Low, json!(["type", "object"]))],
        )]);
        assert_eq!(
            r.catalogs[0].problems[0].message,
            "parameters must be a JSON Schema object, found array"
        );
    }

    #[test]
    fn a_schema_that_does_not_compile_is_invalid_with_the_compilers_message() {
        let bad =
            json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": "five"}}});
        let r = check_catalogs(&[catalog("ops", vec![entry("a", Risk::Low, bad)])]);
        let p = &r.catalogs[0].problems[0];
        assert_eq!(p.reason, INVALID_SCHEMA);
        assert!(
            p.message
                .starts_with("parameters is not a valid JSON Schema: "),
            "{}",
            p.message
        );
        assert!(p.message.contains("minimum"), "{}", p.message);
    }

    #[test]
    fn a_remote_ref_is_invalid_because_nothing_is_fetched() {
        let remote = json!({"type": "object", "properties": {"h": {"$ref": "https://example.invalid/host.json"}}});
        let r = check_catalogs(&[catalog("ops", vec![entry("a", Risk::Low, remote)])]);
        assert_eq!(reasons(&r.catalogs[0]), vec![("a", INVALID_SCHEMA)]);
    }

    #[test]
    fn a_target_param_the_schema_lacks_is_an_invalid_schema() {
        let mut e = entry("a", Risk::Low, host_schema());
        e.target_param = Some("hostname".into());
        let r = check_catalogs(&[catalog("ops", vec![e])]);
        assert_eq!(
            r.catalogs[0].problems[0].message,
            "targetParam \"hostname\" is not a property of parameters"
        );
    }

    #[test]
    fn an_invalid_matcher_regex_is_reported() {
        let mut e = entry("a", Risk::Low, host_schema());
        e.match_.matchers.push(LabelMatcher {
            label: "instance".into(),
            operator: MatchOperator::Regex,
            value: "web-[".into(),
        });
        let r = check_catalogs(&[catalog("ops", vec![e])]);
        assert_eq!(reasons(&r.catalogs[0]), vec![("a", INVALID_MATCHER)]);
        assert!(
            r.catalogs[0].problems[0]
                .message
                .starts_with("matchers[0] on label \"instance\": invalid regular expression")
        );
    }

    #[test]
    fn templates_must_parse_and_name_a_declared_param() {
        let mut e = entry("a", Risk::Low, host_schema());
        e.params_from_labels
            .insert("host".into(), "{{ labels.instance | host }}".into());
        e.params_from_labels
            .insert("service".into(), "{{ labels.service }}".into());
        let r = check_catalogs(&[catalog("ops", vec![e])]);
        assert_eq!(
            r.catalogs[0].problems[0].message,
            "paramsFromLabels.service: the parameters schema has no property \"service\""
        );
        let mut e = entry("b", Risk::Low, host_schema());
        e.params_from_labels
            .insert("host".into(), "{{ labels.instance | hostname }}".into());
        let r = check_catalogs(&[catalog("ops", vec![e])]);
        assert_eq!(reasons(&r.catalogs[0]), vec![("b", INVALID_TEMPLATE)]);
    }

    #[test]
    fn every_problem_of_an_entry_is_reported() {
        let mut e = entry("a", Risk::Low, json!({"type": "array"}));
        e.match_.matchers.push(LabelMatcher {
            label: "x".into(),
            operator: MatchOperator::Regex,
            value: "(".into(),
        });
        e.params_from_labels
            .insert("host".into(), "{{ nope }}".into());
        let r = check_catalogs(&[catalog("ops", vec![e])]);
        assert_eq!(
            reasons(&r.catalogs[0]),
            vec![
                ("a", INVALID_SCHEMA),
                ("a", INVALID_MATCHER),
                ("a", INVALID_TEMPLATE)
            ]
        );
    }

    #[test]
    fn a_name_in_two_catalogs_leaves_both_out_whatever_the_order() {
        let a = catalog(
            "team-a",
            vec![
                entry("restart_service", Risk::Low, host_schema()),
                entry("only_a", Risk::Low, host_schema()),
            ],
        );
        let b = catalog(
            "team-b",
            vec![entry("restart_service", Risk::High, host_schema())],
        );
        for catalogs in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
            let r = check_catalogs(&catalogs);
            let names: Vec<&str> = r.valid_entries().map(ValidEntry::name).collect();
            assert_eq!(names, vec!["only_a"]);
            let msgs: BTreeSet<String> = r
                .catalogs
                .iter()
                .flat_map(|c| c.problems.iter().map(|p| p.message.clone()))
                .collect();
            assert_eq!(
                msgs,
                BTreeSet::from([
                    "entry name \"restart_service\" is also defined in catalog salve/team-a; every entry with this name is left out until names are unique".to_owned(),
                    "entry name \"restart_service\" is also defined in catalog salve/team-b; every entry with this name is left out until names are unique".to_owned(),
                ])
            );
        }
    }

    #[test]
    fn a_duplicate_name_inside_one_catalog_is_a_collision_too() {
        let r = check_catalogs(&[catalog(
            "ops",
            vec![
                entry("a", Risk::Low, host_schema()),
                entry("a", Risk::Low, host_schema()),
            ],
        )]);
        assert!(r.catalogs[0].valid.is_empty());
        assert_eq!(
            reasons(&r.catalogs[0]),
            vec![("a", NAME_COLLISION), ("a", NAME_COLLISION)]
        );
        assert!(
            r.catalogs[0].problems[0]
                .message
                .contains("defined 2 times in this catalog")
        );
    }

    #[test]
    fn the_escalate_name_is_reserved() {
        let r = check_catalogs(&[catalog(
            "ops",
            vec![entry("escalate", Risk::Low, host_schema())],
        )]);
        assert_eq!(reasons(&r.catalogs[0]), vec![("escalate", NAME_COLLISION)]);
    }

    #[test]
    fn candidates_are_the_matching_valid_entries_sorted_by_name() {
        let mut disk = entry("clear_disk_space", Risk::Low, host_schema());
        disk.match_.alertnames = vec!["NodeFilesystemSpaceFillingUp".into()];
        let mut other = entry("restart_service", Risk::Low, host_schema());
        other.match_.alertnames = vec!["ServiceDown".into()];
        let any = entry("a_generic", Risk::Low, host_schema());
        let broken = entry("broken", Risk::Low, json!({"type": "string"}));
        let r = check_catalogs(&[
            catalog("x", vec![disk, other]),
            catalog("y", vec![broken, any]),
        ]);
        let names: Vec<&str> = r
            .candidates(&alert("NodeFilesystemSpaceFillingUp", &[], &[]))
            .into_iter()
            .map(ValidEntry::name)
            .collect();
        assert_eq!(names, vec!["a_generic", "clear_disk_space"]);
    }
}
