//! The decision engine: from an alert and the checked catalogs to one audited
//! [`salve_api::Decision`].
//!
//! ```text
//! candidates ──none──▶ escalate (NoCandidate)
//!     │ one, rules-complete ──▶ rules decision (RulesMatched)
//!     ▼
//! LLM configured? ──no──▶ rules fallback, else escalate (LlmDisabled)
//! prompt ≤ token cap? ──no──▶ rules fallback, else escalate (PromptTooLarge)
//! daily budget left? ──no──▶ rules fallback, else escalate (TokenBudgetExceeded)
//! call the LLM ──error/timeout──▶ rules fallback, else escalate (LlmUnavailable)
//! validate the answer ──refused──▶ escalate (InvalidDecision, exact reason in `validation`)
//!     ▼
//! LLM decision (LlmSelected) or the model's own escalation (LlmEscalated)
//! ```
//!
//! Risk, catalog and playbook always come from the catalog entry. Every path returns a
//! decision; none panics.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use prometheus_client::registry::Registry;
use salve_api::conditions::reasons;
use salve_api::{AlertSnapshot, Decision, DecisionSource, PlaybookCatalog};
use sha2::{Digest, Sha256};
use tracing::instrument;

use crate::budget::TokenBudget;
use crate::hygiene::{CatalogReport, check_catalogs};
use crate::llm::{Completion, LlmClient, LlmConfig, LlmConfigError, LlmError};
use crate::metrics::Metrics;
use crate::prompt::{PromptLimits, build_prompt};
use crate::redact::{RedactionConfig, RedactionError, Redactor};
use crate::rules::{self, RulesChoice};
use crate::schema::answer_schema;
use crate::truncate;
use crate::validate::{Refusal, RefusalCode, Verdict, parse_answer, validate_answer};

/// Longest raw answer kept in the decision.
pub const MAX_RAW_ANSWER: usize = 4096;
/// Longest reasoning and validation text kept in the decision.
const MAX_TEXT: usize = 2048;
/// Longest model name and endpoint host kept (the Incident CRD's limit).
const MAX_NAME: usize = 253;
/// `Decision.validation` of an accepted decision.
pub const VALID: &str = "valid";

/// How the reasoning of a rules fallback starts.
const RULES_FALLBACK_PREFIX: &str = "rules fallback";
/// Reason: the rules decided because the LLM could not be used.
pub const RULES_FALLBACK: &str = "RulesFallback";
// Escalation reasons live in salve-api, where the state machine reads them back.
pub use salve_api::conditions::reasons::{
    LLM_DISABLED, LLM_UNAVAILABLE, PROMPT_TOO_LARGE, TOKEN_BUDGET_EXCEEDED,
};

/// Everything the engine needs.
#[derive(Debug, Clone)]
pub struct DecideConfig {
    /// The model; `None` runs rules-only (everything else escalates).
    pub llm: Option<LlmConfig>,
    /// Secret patterns removed from prompts (and from stored answers).
    pub redaction: RedactionConfig,
    /// Size limits of the alert data in a prompt.
    pub prompt: PromptLimits,
    /// Per-decision cap on prompt tokens (estimated high); larger prompts are not sent.
    pub max_prompt_tokens: u32,
    /// Tokens the LLM may use per rolling 24 hours; `None` for no limit.
    pub daily_token_budget: Option<u64>,
    /// Longest answer accepted, in bytes.
    pub max_answer_bytes: usize,
}

impl Default for DecideConfig {
    fn default() -> Self {
        Self {
            llm: None,
            redaction: RedactionConfig::default(),
            prompt: PromptLimits::default(),
            max_prompt_tokens: 4000,
            daily_token_budget: None,
            max_answer_bytes: 16 * 1024,
        }
    }
}

/// The engine's configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A redaction pattern does not compile.
    #[error(transparent)]
    Redaction(#[from] RedactionError),
    /// The LLM settings are unusable.
    #[error(transparent)]
    Llm(#[from] LlmConfigError),
}

/// What kind of decision came out, for conditions, events and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// The rules fast path chose.
    RulesMatched,
    /// The rules chose because the LLM could not be used.
    RulesFallback,
    /// The LLM chose a candidate and the answer validated.
    LlmSelected,
    /// The LLM chose to escalate.
    LlmEscalated,
    /// The LLM's answer was refused; escalate.
    InvalidDecision,
    /// No candidate; escalate.
    NoCandidate,
    /// The LLM failed and the rules could not decide; escalate.
    LlmUnavailable,
    /// No LLM configured and the rules could not decide; escalate.
    LlmDisabled,
    /// Daily token budget spent and the rules could not decide; escalate.
    OverBudget,
    /// Prompt over the per-decision cap and the rules could not decide; escalate.
    PromptTooLarge,
}

impl OutcomeKind {
    /// PascalCase reason (salve-api's where it has one).
    pub fn reason(self) -> &'static str {
        match self {
            OutcomeKind::RulesMatched => reasons::RULES_MATCHED,
            OutcomeKind::RulesFallback => RULES_FALLBACK,
            OutcomeKind::LlmSelected => reasons::LLM_SELECTED,
            OutcomeKind::LlmEscalated => reasons::LLM_ESCALATED,
            OutcomeKind::InvalidDecision => reasons::INVALID_DECISION,
            OutcomeKind::NoCandidate => reasons::NO_CANDIDATE,
            OutcomeKind::LlmUnavailable => LLM_UNAVAILABLE,
            OutcomeKind::LlmDisabled => LLM_DISABLED,
            OutcomeKind::OverBudget => TOKEN_BUDGET_EXCEEDED,
            OutcomeKind::PromptTooLarge => PROMPT_TOO_LARGE,
        }
    }

    /// Every kind.
    pub const ALL: [OutcomeKind; 10] = [
        OutcomeKind::RulesMatched,
        OutcomeKind::RulesFallback,
        OutcomeKind::LlmSelected,
        OutcomeKind::LlmEscalated,
        OutcomeKind::InvalidDecision,
        OutcomeKind::NoCandidate,
        OutcomeKind::LlmUnavailable,
        OutcomeKind::LlmDisabled,
        OutcomeKind::OverBudget,
        OutcomeKind::PromptTooLarge,
    ];

    /// The kind of a stored decision (e.g. read back from an Incident's status). Decisions
    /// are self-describing: a refused or escalated one has `validation` = `Reason: detail`
    /// with the kind's [`reason`](Self::reason) first; a rules fallback's reasoning starts with
    /// `rules fallback`.
    pub fn of(decision: &Decision) -> OutcomeKind {
        match (&decision.playbook, decision.source) {
            (Some(_), DecisionSource::Rules)
                if decision.reasoning.starts_with(RULES_FALLBACK_PREFIX) =>
            {
                OutcomeKind::RulesFallback
            }
            (Some(_), DecisionSource::Rules) => OutcomeKind::RulesMatched,
            (Some(_), DecisionSource::Llm) => OutcomeKind::LlmSelected,
            (None, _) if decision.validation == VALID => OutcomeKind::LlmEscalated,
            (None, _) => {
                let head = decision.validation.split(':').next().unwrap_or_default();
                OutcomeKind::ALL
                    .into_iter()
                    .find(|k| k.escalates() && k.reason() == head)
                    .unwrap_or(OutcomeKind::InvalidDecision)
            }
        }
    }

    /// Whether the decision hands the incident to a human (no playbook).
    pub fn escalates(self) -> bool {
        match self {
            OutcomeKind::RulesMatched | OutcomeKind::RulesFallback | OutcomeKind::LlmSelected => {
                false
            }
            OutcomeKind::LlmEscalated
            | OutcomeKind::InvalidDecision
            | OutcomeKind::NoCandidate
            | OutcomeKind::LlmUnavailable
            | OutcomeKind::LlmDisabled
            | OutcomeKind::OverBudget
            | OutcomeKind::PromptTooLarge => true,
        }
    }
}

/// A decision and what kind it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The decision to record in the Incident's status.
    pub decision: Decision,
    /// Its kind.
    pub kind: OutcomeKind,
}

/// Audit fields of an LLM exchange.
#[derive(Debug, Clone, Default)]
struct Audit {
    model: Option<String>,
    endpoint: Option<String>,
    prompt_hash: Option<String>,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    raw_answer: Option<String>,
}

/// Decides remediations. Cheap to share (`Arc`); `decide` may run concurrently.
pub struct DecisionEngine {
    config: DecideConfig,
    redactor: Redactor,
    llm: Option<LlmClient>,
    budget: Option<Mutex<TokenBudget>>,
    metrics: Metrics,
    reports: Mutex<Option<(Vec<u8>, Arc<CatalogReport>)>>,
}

impl std::fmt::Debug for DecisionEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionEngine")
            .field("llm", &self.llm)
            .finish_non_exhaustive()
    }
}

impl DecisionEngine {
    /// Builds the engine and registers its metrics into `registry`.
    pub fn new(config: DecideConfig, registry: &mut Registry) -> Result<Self, ConfigError> {
        let redactor = Redactor::new(&config.redaction)?;
        let llm = config.llm.clone().map(LlmClient::new).transpose()?;
        let budget = config
            .daily_token_budget
            .map(|limit| Mutex::new(TokenBudget::new(limit)));
        Ok(Self {
            metrics: Metrics::register(registry),
            config,
            redactor,
            llm,
            budget,
            reports: Mutex::new(None),
        })
    }

    /// Decides for `alert` given all catalogs, now. The catalogs are checked once per distinct
    /// content (a fingerprint of names and specs), so repeated calls with unchanged catalogs
    /// skip compiling schemas; [`Self::decide_with`] takes a [`CatalogReport`] directly.
    pub async fn decide(&self, alert: &AlertSnapshot, catalogs: &[PlaybookCatalog]) -> Decision {
        let report = self.report_for(catalogs);
        self.decide_with(alert, &report, Timestamp::now())
            .await
            .decision
    }

    /// The [`CatalogReport`] for `catalogs`, from the cache when their content is unchanged.
    pub fn report_for(&self, catalogs: &[PlaybookCatalog]) -> Arc<CatalogReport> {
        let Some(key) = fingerprint(catalogs) else {
            return Arc::new(check_catalogs(catalogs));
        };
        let mut cache = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, report)) = cache.as_ref()
            && *cached == key
        {
            return report.clone();
        }
        let report = Arc::new(check_catalogs(catalogs));
        *cache = Some((key, report.clone()));
        report
    }

    /// Decides for `alert` from an already checked `report`, at time `now`.
    #[instrument(skip_all, fields(alert = %alert.name))]
    pub async fn decide_with(
        &self,
        alert: &AlertSnapshot,
        report: &CatalogReport,
        now: Timestamp,
    ) -> Outcome {
        let started = Instant::now();
        let mut outcome = self.run(alert, report, now).await;
        outcome.decision.latency_ms =
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let source = match outcome.decision.source {
            DecisionSource::Rules => "rules",
            DecisionSource::Llm => "llm",
        };
        self.metrics.decision(source, outcome.kind.reason());
        tracing::info!(
            outcome = outcome.kind.reason(),
            source,
            playbook = outcome.decision.playbook.as_deref().unwrap_or("-"),
            latency_ms = outcome.decision.latency_ms,
            prompt_hash = outcome.decision.prompt_hash.as_deref().unwrap_or("-"),
            "decided"
        );
        outcome
    }

    async fn run(&self, alert: &AlertSnapshot, report: &CatalogReport, now: Timestamp) -> Outcome {
        let candidates = report.candidates(alert);
        if candidates.is_empty() {
            let why = format!("no valid catalog entry matches alert {:?}", alert.name);
            return escalate(
                DecisionSource::Rules,
                OutcomeKind::NoCandidate,
                why,
                Audit::default(),
                now,
            );
        }
        if let Some(choice) = rules::fast_path(&candidates, alert) {
            let reasoning = format!(
                "rules: {} is the only candidate for {} and its paramsFromLabels fill every required param",
                choice.entry.name(),
                alert.name
            );
            return rules_decision(
                choice,
                OutcomeKind::RulesMatched,
                reasoning,
                Audit::default(),
                now,
            );
        }
        let fallback = |kind: OutcomeKind, source: DecisionSource, why: String, audit: Audit| {
            match rules::fallback(&candidates, alert) {
                Some(choice) => {
                    let reasoning = format!(
                        "{RULES_FALLBACK_PREFIX} ({}: {why}): {} is the only candidate whose paramsFromLabels fill every required param",
                        kind.reason(),
                        choice.entry.name()
                    );
                    rules_decision(choice, OutcomeKind::RulesFallback, reasoning, audit, now)
                }
                None => escalate(source, kind, why, audit, now),
            }
        };

        let Some(llm) = &self.llm else {
            let why = format!(
                "no LLM is configured and the rules cannot decide among {} candidates",
                candidates.len()
            );
            return fallback(
                OutcomeKind::LlmDisabled,
                DecisionSource::Rules,
                why,
                Audit::default(),
            );
        };

        let prompt = build_prompt(alert, &candidates, &self.redactor, &self.config.prompt);
        let schema = answer_schema(&candidates);
        let mut audit = Audit {
            model: Some(truncate(llm.model(), MAX_NAME)),
            endpoint: Some(truncate(llm.endpoint_host(), MAX_NAME)),
            prompt_hash: Some(prompt.hash()),
            ..Audit::default()
        };
        let estimated = prompt.estimated_tokens(&schema);
        if estimated > self.config.max_prompt_tokens {
            let why = format!(
                "the prompt for {} candidates is about {estimated} tokens; the per-decision cap is {}",
                candidates.len(),
                self.config.max_prompt_tokens
            );
            return fallback(
                OutcomeKind::PromptTooLarge,
                DecisionSource::Rules,
                why,
                audit,
            );
        }
        let worst_case = u64::from(estimated) + u64::from(llm.max_completion_tokens());
        let reservation = match &self.budget {
            None => None,
            Some(budget) => {
                let mut b = budget.lock().unwrap_or_else(|e| e.into_inner());
                let reserved = b.try_reserve(now, worst_case);
                self.metrics.budget_used(b.used(now));
                match reserved {
                    Ok(r) => Some(r),
                    Err(over) => {
                        drop(b);
                        return fallback(
                            OutcomeKind::OverBudget,
                            DecisionSource::Rules,
                            over.to_string(),
                            audit,
                        );
                    }
                }
            }
        };

        let asked = Instant::now();
        let result = llm.complete(&prompt, &schema, &self.metrics).await;
        self.metrics.llm_latency(asked.elapsed().as_secs_f64());

        if let (Some(budget), Some(reservation)) = (&self.budget, reservation) {
            let actual = match &result {
                Ok(c) => match (c.prompt_tokens, c.completion_tokens) {
                    (Some(p), Some(c)) => u64::from(p) + u64::from(c),
                    _ => worst_case,
                },
                // Nothing was processed when no request got through or the server refused it
                // outright; a timeout or a garbled answer may still have been billed.
                Err(
                    LlmError::ApiKey(_)
                    | LlmError::Saturated(_)
                    | LlmError::Connect(_)
                    | LlmError::Http { .. },
                ) => 0,
                Err(
                    LlmError::Timeout(_)
                    | LlmError::Deadline(_)
                    | LlmError::Transport(_)
                    | LlmError::Protocol(_),
                ) => worst_case,
            };
            let mut b = budget.lock().unwrap_or_else(|e| e.into_inner());
            b.settle(reservation, actual, now);
            self.metrics.budget_used(b.used(now));
        }

        let completion = match result {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(category = err.category(), endpoint = llm.endpoint_host(), error = %err, "LLM call failed");
                let why = format!("the LLM call failed ({}): {err}", err.category());
                return fallback(OutcomeKind::LlmUnavailable, DecisionSource::Llm, why, audit);
            }
        };
        self.metrics.tokens(
            completion.prompt_tokens.map_or(0, u64::from),
            completion.completion_tokens.map_or(0, u64::from),
        );
        audit.model = completion
            .model
            .as_deref()
            .map(|m| truncate(m, MAX_NAME))
            .or(audit.model);
        audit.prompt_tokens = completion.prompt_tokens;
        audit.completion_tokens = completion.completion_tokens;
        audit.raw_answer = completion
            .content
            .as_deref()
            .or(completion.refusal.as_deref())
            .map(|raw| truncate(&self.redactor.redact(raw), MAX_RAW_ANSWER));

        match self.judge(&completion, &candidates, alert) {
            Ok(Verdict::Select {
                entry,
                params,
                reasoning,
            }) => {
                let mut d = base_decision(DecisionSource::Llm, audit, now);
                d.playbook = Some(entry.name().to_owned());
                d.catalog = Some(entry.catalog.clone());
                d.params = Some(params);
                d.risk = Some(entry.entry.risk);
                d.reasoning = truncate(&self.redactor.redact(&reasoning), MAX_TEXT);
                Outcome {
                    decision: d,
                    kind: OutcomeKind::LlmSelected,
                }
            }
            Ok(Verdict::Escalate { reasoning }) => {
                let mut d = base_decision(DecisionSource::Llm, audit, now);
                d.reasoning = truncate(&self.redactor.redact(&reasoning), MAX_TEXT);
                Outcome {
                    decision: d,
                    kind: OutcomeKind::LlmEscalated,
                }
            }
            Err(refusal) => {
                self.metrics.invalid_answer(refusal.code.as_str());
                tracing::warn!(code = refusal.code.as_str(), "LLM answer refused");
                let mut d = base_decision(DecisionSource::Llm, audit, now);
                let text = format!("{}: {refusal}", OutcomeKind::InvalidDecision.reason());
                let text = truncate(&self.redactor.redact(&text), MAX_TEXT);
                d.reasoning = format!(
                    "escalated: the LLM's answer was refused ({})",
                    refusal.code.as_str()
                );
                d.validation = text;
                Outcome {
                    decision: d,
                    kind: OutcomeKind::InvalidDecision,
                }
            }
        }
    }

    fn judge<'a>(
        &self,
        completion: &Completion,
        candidates: &[&'a crate::hygiene::ValidEntry],
        alert: &AlertSnapshot,
    ) -> Result<Verdict<'a>, Refusal> {
        if completion.choices == 0 {
            return Err(Refusal {
                code: RefusalCode::EmptyAnswer,
                detail: "the response has no choices".to_owned(),
            });
        }
        let content = completion.content.as_deref().unwrap_or_default();
        if content.trim().is_empty() {
            return Err(match &completion.refusal {
                Some(r) => Refusal {
                    code: RefusalCode::ModelRefused,
                    detail: format!("the model refused: {:?}", truncate(r, 200)),
                },
                None => Refusal {
                    code: RefusalCode::EmptyAnswer,
                    detail: "the first choice has no content".to_owned(),
                },
            });
        }
        let truncated = completion.finish_reason.as_deref() == Some("length");
        let answer = parse_answer(content, self.config.max_answer_bytes, truncated)?;
        validate_answer(answer, candidates, alert)
    }
}

/// SHA-256 over every catalog's namespace, name and spec; `None` if a spec does not serialize.
fn fingerprint(catalogs: &[PlaybookCatalog]) -> Option<Vec<u8>> {
    let mut h = Sha256::new();
    for c in catalogs {
        for part in [c.metadata.namespace.as_deref(), c.metadata.name.as_deref()] {
            h.update(part.unwrap_or_default().as_bytes());
            h.update([0u8]);
        }
        h.update(serde_json::to_vec(&c.spec).ok()?);
        h.update([0u8]);
    }
    Some(h.finalize().to_vec())
}

fn base_decision(source: DecisionSource, audit: Audit, now: Timestamp) -> Decision {
    Decision {
        playbook: None,
        catalog: None,
        params: None,
        risk: None,
        reasoning: String::new(),
        source,
        model: audit.model,
        endpoint: audit.endpoint,
        prompt_hash: audit.prompt_hash,
        prompt_tokens: audit.prompt_tokens,
        completion_tokens: audit.completion_tokens,
        latency_ms: 0,
        raw_answer: audit.raw_answer,
        validation: VALID.to_owned(),
        decided_at: Time(now),
    }
}

fn rules_decision(
    choice: RulesChoice<'_>,
    kind: OutcomeKind,
    reasoning: String,
    audit: Audit,
    now: Timestamp,
) -> Outcome {
    let mut d = base_decision(DecisionSource::Rules, audit, now);
    d.playbook = Some(choice.entry.name().to_owned());
    d.catalog = Some(choice.entry.catalog.clone());
    d.params = Some(choice.params);
    d.risk = Some(choice.entry.entry.risk);
    d.reasoning = truncate(&reasoning, MAX_TEXT);
    Outcome { decision: d, kind }
}

fn escalate(
    source: DecisionSource,
    kind: OutcomeKind,
    why: String,
    audit: Audit,
    now: Timestamp,
) -> Outcome {
    let mut d = base_decision(source, audit, now);
    d.reasoning = truncate(&format!("escalated: {why}"), MAX_TEXT);
    d.validation = truncate(&format!("{}: {why}", kind.reason()), MAX_TEXT);
    Outcome { decision: d, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(
        playbook: Option<&str>,
        source: DecisionSource,
        reasoning: &str,
        validation: &str,
    ) -> Decision {
        let mut d = base_decision(source, Audit::default(), Timestamp::UNIX_EPOCH);
        d.playbook = playbook.map(str::to_owned);
        d.reasoning = reasoning.to_owned();
        d.validation = validation.to_owned();
        d
    }

    #[test]
    fn a_stored_decision_tells_its_own_kind() {
        use DecisionSource::{Llm, Rules};
        let cases = [
            (
                stored(Some("a"), Rules, "rules: a is the only candidate", VALID),
                OutcomeKind::RulesMatched,
            ),
            (
                stored(
                    Some("a"),
                    Rules,
                    "rules fallback (LlmUnavailable: x): a",
                    VALID,
                ),
                OutcomeKind::RulesFallback,
            ),
            (
                stored(Some("a"), Llm, "why", VALID),
                OutcomeKind::LlmSelected,
            ),
            (
                stored(None, Llm, "unsure", VALID),
                OutcomeKind::LlmEscalated,
            ),
            (
                stored(None, Llm, "", "InvalidDecision: UnknownPlaybook: \"x\""),
                OutcomeKind::InvalidDecision,
            ),
            (
                stored(None, Rules, "", "NoCandidate: no valid catalog entry"),
                OutcomeKind::NoCandidate,
            ),
            (
                stored(None, Llm, "", "LlmUnavailable: the LLM call failed"),
                OutcomeKind::LlmUnavailable,
            ),
            (
                stored(None, Rules, "", "LlmDisabled: no LLM"),
                OutcomeKind::LlmDisabled,
            ),
            (
                stored(None, Rules, "", "TokenBudgetExceeded: spent"),
                OutcomeKind::OverBudget,
            ),
            (
                stored(None, Rules, "", "PromptTooLarge: 9000 tokens"),
                OutcomeKind::PromptTooLarge,
            ),
            (
                stored(None, Llm, "", "something unexpected"),
                OutcomeKind::InvalidDecision,
            ),
        ];
        for (d, kind) in cases {
            assert_eq!(OutcomeKind::of(&d), kind, "{d:?}");
        }
    }

    #[test]
    fn catalog_reports_are_reused_until_a_spec_changes() {
        use crate::testing::demo_catalog;
        let engine =
            DecisionEngine::new(DecideConfig::default(), &mut Registry::default()).expect("engine");
        let mut catalogs = vec![demo_catalog()];
        let first = engine.report_for(&catalogs);
        assert!(Arc::ptr_eq(&first, &engine.report_for(&catalogs)));
        // A status change does not touch the spec: same report.
        catalogs[0].status = Some(Default::default());
        assert!(Arc::ptr_eq(&first, &engine.report_for(&catalogs)));
        catalogs[0].spec.entries[0]
            .match_
            .alertnames
            .push("NewAlert".into());
        let changed = engine.report_for(&catalogs);
        assert!(!Arc::ptr_eq(&first, &changed));
        let names = |r: &CatalogReport| {
            r.candidates(&crate::testing::alert("NewAlert", &[], &[]))
                .iter()
                .map(|e| e.name().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&changed), vec!["restart_service"]);
        assert!(names(&first).is_empty());
    }

    #[test]
    fn every_escalating_kind_has_a_distinct_reason() {
        let reasons: std::collections::BTreeSet<&str> =
            OutcomeKind::ALL.iter().map(|k| k.reason()).collect();
        assert_eq!(reasons.len(), OutcomeKind::ALL.len());
    }
}
