//! The LLM path end to end: the real async-openai client against a scripted
//! OpenAI-compatible server on a loopback socket.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use prometheus_client::registry::Registry;
use salve_api::{AlertSnapshot, DecisionSource, Risk};
use salve_decide::engine::VALID;
use salve_decide::testing::server::{Reply, ScriptedLlm};
use salve_decide::testing::{alert, demo_catalog, fast_llm_config};
use salve_decide::{
    CatalogReport, DecideConfig, DecisionEngine, LlmConfig, Outcome, OutcomeKind, check_catalogs,
};
use serde_json::json;

const KEY: &str = "sk-test-0123456789abcdefghij";

fn key_file(name: &str, key: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("salve-decide-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, format!("{key}\n")).expect("key file");
    path
}

fn config(server: &ScriptedLlm, key_name: &str) -> DecideConfig {
    let mut llm = fast_llm_config(server.base_url());
    llm.api_key_file = Some(key_file(key_name, KEY));
    DecideConfig {
        llm: Some(llm),
        ..DecideConfig::default()
    }
}

fn engine(config: DecideConfig) -> (DecisionEngine, Registry) {
    let mut registry = Registry::default();
    let engine = DecisionEngine::new(config, &mut registry).expect("engine");
    (engine, registry)
}

fn now() -> Timestamp {
    "2026-11-28T00:12:00Z".parse().expect("timestamp")
}

fn report() -> CatalogReport {
    let r = check_catalogs(&[demo_catalog()]);
    assert!(
        r.catalogs[0].problems.is_empty(),
        "{:?}",
        r.catalogs[0].problems
    );
    r
}

/// One candidate (scale_pods) whose replicas only the LLM can choose: no rules decision.
fn latency_alert() -> AlertSnapshot {
    alert(
        "HighRequestLatency",
        &[
            ("namespace", "shop"),
            ("deployment", "checkout"),
            ("instance", "checkout-7d9f8b6c5-x2x9k:8080"),
            ("severity", "warning"),
        ],
        &[("summary", "p99 latency above 2s for 10 minutes")],
    )
}

/// Two candidates (restart_service, failover_database); only restart_service is
/// rules-complete, so the rules can stand in when the LLM fails.
fn postgres_alert() -> AlertSnapshot {
    alert(
        "PostgresPrimaryDown",
        &[
            ("cluster", "prod-db"),
            ("instance", "db-1:9187"),
            ("service", "postgresql"),
            ("severity", "critical"),
        ],
        &[("summary", "The primary of prod-db does not answer")],
    )
}

async fn decide(engine: &DecisionEngine, a: &AlertSnapshot) -> Outcome {
    let out = engine.decide_with(a, &report(), now()).await;
    assert_eq!(
        OutcomeKind::of(&out.decision),
        out.kind,
        "a stored decision tells its own kind"
    );
    out
}

fn metrics_text(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("encode metrics");
    out
}

#[tokio::test]
async fn a_valid_choice_becomes_an_llm_decision_with_a_full_audit_trail() {
    let server = ScriptedLlm::start().await.expect("server");
    server.push(
        Reply::choose(
            "scale_pods",
            json!({"namespace": "shop", "deployment": "checkout", "replicas": 6}),
            "latency from load; scale out",
        )
        .with_usage(812, 37),
    );
    let (engine, registry) = engine(config(&server, "valid"));
    let out = decide(&engine, &latency_alert()).await;

    assert_eq!(out.kind, OutcomeKind::LlmSelected);
    let d = &out.decision;
    assert_eq!(d.source, DecisionSource::Llm);
    assert_eq!(d.playbook.as_deref(), Some("scale_pods"));
    assert_eq!(d.catalog.as_deref(), Some("demo"));
    assert_eq!(
        d.params,
        Some(json!({"namespace": "shop", "deployment": "checkout", "replicas": 6}))
    );
    assert_eq!(d.risk, Some(Risk::Medium));
    assert_eq!(d.reasoning, "latency from load; scale out");
    assert_eq!(d.model.as_deref(), Some("scripted-model"));
    assert_eq!(d.endpoint.as_deref(), Some("127.0.0.1"));
    assert_eq!(d.prompt_tokens, Some(812));
    assert_eq!(d.completion_tokens, Some(37));
    assert_eq!(d.validation, VALID);
    assert_eq!(d.decided_at.0, now());
    let hash = d.prompt_hash.as_deref().expect("prompt hash");
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hash}"
    );
    assert!(
        d.raw_answer
            .as_deref()
            .expect("raw answer")
            .contains("\"scale_pods\"")
    );

    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(
        req.authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(req.body["temperature"], json!(0));
    assert_eq!(req.body["max_tokens"], json!(256));
    assert_eq!(req.body["model"], json!("scripted-model"));
    assert_eq!(req.mode(), "json_schema");
    assert_eq!(
        req.body["response_format"]["json_schema"]["strict"],
        json!(true)
    );
    let branches = req.response_schema().expect("schema")["oneOf"]
        .as_array()
        .expect("oneOf")
        .clone();
    let names: Vec<&str> = branches
        .iter()
        .filter_map(|b| b["properties"]["playbook"]["const"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["scale_pods", "escalate"],
        "only the candidates reach the prompt"
    );
    assert!(!req.raw.contains("failover_database") && !req.raw.contains("clear_disk_space"));

    // The key is in the Authorization header and nowhere else.
    let stored = serde_json::to_string(d).expect("decision json");
    assert!(!stored.contains(KEY));
    assert!(!req.raw.contains(KEY));
    let metrics = metrics_text(&registry);
    assert!(!metrics.contains(KEY));
    assert!(
        metrics.contains(r#"salve_decide_decisions_total{source="llm",outcome="LlmSelected"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"salve_decide_llm_tokens_total{kind="prompt"} 812"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"salve_decide_llm_requests_total{mode="json_schema",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("salve_decide_llm_latency_seconds_count 1"),
        "{metrics}"
    );
}

async fn refused(reply: Reply) -> (Outcome, Registry) {
    let server = ScriptedLlm::start().await.expect("server");
    server.push(reply);
    let (engine, registry) = engine(config(&server, "refused"));
    let out = decide(&engine, &latency_alert()).await;
    assert_eq!(out.kind, OutcomeKind::InvalidDecision, "{:?}", out.decision);
    assert_eq!(out.decision.source, DecisionSource::Llm);
    assert_eq!(out.decision.playbook, None);
    assert_eq!(out.decision.risk, None);
    assert_eq!(out.decision.params, None);
    assert_eq!(server.requests().len(), 1);
    (out, registry)
}

#[tokio::test]
async fn an_unknown_playbook_escalates_naming_the_candidates() {
    let (out, registry) = refused(Reply::choose(
        "failover_database",
        json!({"cluster_name": "prod"}),
        "ignore the rules",
    ))
    .await;
    assert_eq!(
        out.decision.validation,
        "InvalidDecision: UnknownPlaybook: \"failover_database\" is not a candidate for this alert (candidates: scale_pods, or escalate)"
    );
    assert!(
        metrics_text(&registry)
            .contains(r#"salve_decide_invalid_answers_total{reason="UnknownPlaybook"} 1"#)
    );
}

#[tokio::test]
async fn params_violating_the_schema_escalate_with_the_jsonschema_error() {
    let (out, _) = refused(Reply::choose(
        "scale_pods",
        json!({"namespace": "shop", "deployment": "checkout", "replicas": 500}),
        "",
    ))
    .await;
    assert_eq!(
        out.decision.validation,
        "InvalidDecision: InvalidParams: params for scale_pods do not match its schema: /replicas: 500 is greater than the maximum of 50"
    );
}

#[tokio::test]
async fn a_target_unrelated_to_the_alert_escalates() {
    let (out, _) = refused(Reply::choose(
        "scale_pods",
        json!({"namespace": "shop", "deployment": "payments", "replicas": 3}),
        "",
    ))
    .await;
    assert!(
        out.decision
            .validation
            .starts_with("InvalidDecision: TargetNotRelated: target param \"deployment\" = \"payments\" is neither"),
        "{}",
        out.decision.validation
    );
}

#[tokio::test]
async fn malformed_json_escalates() {
    let (out, _) = refused(Reply::content(
        r#"{"playbook": "scale_pods", "params": {"replicas": 3"#,
    ))
    .await;
    assert!(
        out.decision
            .validation
            .starts_with("InvalidDecision: MalformedAnswer: the answer is not JSON ("),
        "{}",
        out.decision.validation
    );
}

#[tokio::test]
async fn prose_instead_of_json_escalates() {
    let (out, _) = refused(Reply::content(
        "Sure! I would scale the checkout deployment to 6 replicas.",
    ))
    .await;
    assert!(
        out.decision.validation.starts_with(
            "InvalidDecision: MalformedAnswer: the answer is not JSON (expected value at line 1 column 1)"
        ),
        "{}",
        out.decision.validation
    );
    assert_eq!(
        out.decision.raw_answer.as_deref(),
        Some("Sure! I would scale the checkout deployment to 6 replicas.")
    );
}

#[tokio::test]
async fn an_oversized_answer_escalates_and_is_stored_truncated() {
    let huge = json!({"playbook": "escalate", "reasoning": "x".repeat(100_000)}).to_string();
    let (out, _) = refused(Reply::content(huge.clone())).await;
    assert_eq!(
        out.decision.validation,
        format!(
            "InvalidDecision: OversizedAnswer: answer is {} bytes; at most 16384 are accepted",
            huge.len()
        )
    );
    let raw = out.decision.raw_answer.as_deref().expect("raw answer kept");
    assert!(raw.len() <= 4096 && raw.ends_with('…'), "{}", raw.len());
}

#[tokio::test]
async fn empty_choices_escalate() {
    let (out, _) = refused(Reply::NoChoices).await;
    assert_eq!(
        out.decision.validation,
        "InvalidDecision: EmptyAnswer: the response has no choices"
    );
}

#[tokio::test]
async fn a_model_refusal_escalates() {
    let (out, _) = refused(Reply::Refusal("I can't help with that.".into())).await;
    assert_eq!(
        out.decision.validation,
        "InvalidDecision: ModelRefused: the model refused: \"I can't help with that.\""
    );
}

#[tokio::test]
async fn an_answer_cut_by_max_tokens_says_so() {
    let (out, _) = refused(
        Reply::content(r#"{"playbook":"scale_pods","params":{"names"#).finished_by("length"),
    )
    .await;
    assert!(
        out.decision.validation.starts_with(
            "InvalidDecision: TruncatedAnswer: the model hit max_tokens and the answer is not JSON"
        ),
        "{}",
        out.decision.validation
    );
}

#[tokio::test]
async fn extra_fields_such_as_a_command_or_a_risk_escalate() {
    let (out, _) = refused(Reply::content(
        json!({"playbook": "scale_pods", "params": {"namespace": "shop", "deployment": "checkout", "replicas": 2}, "reasoning": "", "risk": "low", "command": "kubectl delete ns shop"})
            .to_string(),
    ))
    .await;
    assert_eq!(
        out.decision.validation,
        "InvalidDecision: UnexpectedField: the answer sets \"command\", \"risk\"; only playbook, params and reasoning are allowed"
    );
}

#[tokio::test]
async fn the_models_own_escalation_is_a_valid_decision() {
    let server = ScriptedLlm::start().await.expect("server");
    server.push(Reply::escalate(
        "latency is caused by a dependency; scaling will not help",
    ));
    let (engine, _) = engine(config(&server, "escalate"));
    let out = decide(&engine, &latency_alert()).await;
    assert_eq!(out.kind, OutcomeKind::LlmEscalated);
    assert_eq!(out.decision.playbook, None);
    assert_eq!(out.decision.validation, VALID);
    assert_eq!(
        out.decision.reasoning,
        "latency is caused by a dependency; scaling will not help"
    );
}

#[tokio::test]
async fn http_500_on_json_schema_falls_back_to_json_object_with_schema_and_remembers_it() {
    let server = ScriptedLlm::start().await.expect("server");
    server.reject_json_schema(true);
    let answer = || {
        Reply::choose(
            "scale_pods",
            json!({"namespace": "shop", "deployment": "checkout", "replicas": 4}),
            "",
        )
    };
    server.push(answer()).push(answer());
    let (engine, registry) = engine(config(&server, "llamacpp"));

    let first = decide(&engine, &latency_alert()).await;
    assert_eq!(first.kind, OutcomeKind::LlmSelected, "{:?}", first.decision);
    let modes: Vec<&str> = server.requests().iter().map(|r| r.mode()).collect();
    assert_eq!(modes, vec!["json_schema", "json_object+schema"]);

    let second = decide(&engine, &latency_alert()).await;
    assert_eq!(second.kind, OutcomeKind::LlmSelected);
    let modes: Vec<&str> = server.requests().iter().map(|r| r.mode()).collect();
    assert_eq!(
        modes,
        vec!["json_schema", "json_object+schema", "json_object+schema"],
        "the working mode is remembered"
    );
    // The schema travels in the fallback mode too.
    assert!(server.requests()[2].response_schema().is_some());
    let metrics = metrics_text(&registry);
    assert!(
        metrics.contains(r#"salve_decide_llm_requests_total{mode="json_schema",status="500"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"salve_decide_llm_requests_total{mode="json_object+schema",status="200"} 2"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn servers_refusing_both_schema_modes_get_plain_json_mode_and_validation() {
    let server = ScriptedLlm::start().await.expect("server");
    server
        .push(Reply::status(
            400,
            r#"{"error":{"message":"response_format json_schema unsupported"}}"#,
        ))
        .push(Reply::status(
            422,
            r#"{"object":"error","message":"unknown field schema"}"#,
        ))
        .push(Reply::choose(
            "scale_pods",
            json!({"namespace": "shop", "deployment": "checkout", "replicas": 2}),
            "",
        ))
        .push(Reply::choose(
            "scale_pods",
            json!({"namespace": "shop", "deployment": "checkout", "replicas": 999}),
            "",
        ));
    let (engine, _) = engine(config(&server, "jsonmode"));
    assert_eq!(
        decide(&engine, &latency_alert()).await.kind,
        OutcomeKind::LlmSelected
    );
    // Plain JSON mode constrains nothing; validation still refuses a bad answer.
    let second = decide(&engine, &latency_alert()).await;
    assert_eq!(second.kind, OutcomeKind::InvalidDecision);
    let modes: Vec<&str> = server.requests().iter().map(|r| r.mode()).collect();
    assert_eq!(
        modes,
        vec![
            "json_schema",
            "json_object+schema",
            "json_object",
            "json_object"
        ]
    );
    // Without a schema in the request, the candidates' schemas are in the prompt.
    let user = server.requests()[2]
        .message("user")
        .expect("user message")
        .to_owned();
    assert!(
        user.contains(r#""replicas":{"#) && user.contains(r#""maximum":50"#),
        "{user}"
    );
}

#[tokio::test]
async fn a_429_is_retried_and_then_succeeds() {
    let server = ScriptedLlm::start().await.expect("server");
    server.push(Reply::rate_limited()).push(Reply::choose(
        "scale_pods",
        json!({"namespace": "shop", "deployment": "checkout", "replicas": 3}),
        "",
    ));
    let (engine, registry) = engine(config(&server, "429"));
    let out = decide(&engine, &latency_alert()).await;
    assert_eq!(out.kind, OutcomeKind::LlmSelected);
    assert_eq!(server.requests().len(), 2);
    assert!(
        server.requests().iter().all(|r| r.mode() == "json_schema"),
        "a 429 is not a reason to change modes"
    );
    let metrics = metrics_text(&registry);
    assert!(
        metrics.contains(r#"salve_decide_llm_requests_total{mode="json_schema",status="429"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn persistent_503s_stop_after_the_retry_budget_and_fall_back_to_the_rules() {
    let server = ScriptedLlm::start().await.expect("server");
    for _ in 0..3 {
        server.push(Reply::status(503, "overloaded"));
    }
    let (engine, _) = engine(config(&server, "503"));
    let out = decide(&engine, &postgres_alert()).await;
    assert_eq!(server.requests().len(), 3, "one try and max_retries = 2");
    assert_eq!(out.kind, OutcomeKind::RulesFallback);
    let d = &out.decision;
    assert_eq!(d.source, DecisionSource::Rules);
    assert_eq!(d.playbook.as_deref(), Some("restart_service"));
    assert_eq!(
        d.params,
        Some(json!({"host": "db-1", "service": "postgresql"}))
    );
    assert_eq!(d.risk, Some(Risk::Low));
    assert!(
        d.reasoning.starts_with("rules fallback (LlmUnavailable: the LLM call failed (HttpStatus): HTTP 503 from the LLM endpoint: overloaded)"),
        "{}",
        d.reasoning
    );
}

fn slow_config(server: &ScriptedLlm) -> DecideConfig {
    let mut c = config(server, "slow");
    if let Some(llm) = c.llm.as_mut() {
        llm.request_timeout = Duration::from_millis(300);
    }
    c
}

#[tokio::test]
async fn a_timeout_falls_back_to_the_rules_when_they_can_decide() {
    let server = ScriptedLlm::start().await.expect("server");
    server.push(Reply::escalate("too late").after(Duration::from_secs(3)));
    let (engine, _) = engine(slow_config(&server));
    let out = decide(&engine, &postgres_alert()).await;
    assert_eq!(out.kind, OutcomeKind::RulesFallback, "{:?}", out.decision);
    assert_eq!(out.decision.playbook.as_deref(), Some("restart_service"));
    assert!(
        out.decision
            .reasoning
            .contains("(Timeout): no answer within the request timeout of 300ms"),
        "{}",
        out.decision.reasoning
    );
    assert_eq!(server.requests().len(), 1, "timeouts are not retried");
    assert!(
        out.decision.latency_ms < 3000,
        "{}",
        out.decision.latency_ms
    );
}

#[tokio::test]
async fn a_timeout_escalates_when_the_rules_cannot_decide() {
    let server = ScriptedLlm::start().await.expect("server");
    server.push(Reply::escalate("too late").after(Duration::from_secs(3)));
    let (engine, _) = engine(slow_config(&server));
    let out = decide(&engine, &latency_alert()).await;
    assert_eq!(out.kind, OutcomeKind::LlmUnavailable);
    assert_eq!(out.decision.source, DecisionSource::Llm);
    assert_eq!(out.decision.playbook, None);
    assert_eq!(
        out.decision.validation,
        "LlmUnavailable: the LLM call failed (Timeout): no answer within the request timeout of 300ms"
    );
    assert!(
        out.decision.prompt_hash.is_some(),
        "the prompt that was sent is still auditable"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_escalates_after_bounded_retries() {
    // Bind then drop: nothing listens on this port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let cfg = DecideConfig {
        llm: Some(fast_llm_config(&format!("http://127.0.0.1:{port}/v1"))),
        ..DecideConfig::default()
    };
    let (engine, _) = engine(cfg);
    let out = decide(&engine, &latency_alert()).await;
    assert_eq!(out.kind, OutcomeKind::LlmUnavailable);
    assert!(
        out.decision
            .validation
            .starts_with("LlmUnavailable: the LLM call failed (Connect)"),
        "{}",
        out.decision.validation
    );
}

#[tokio::test]
async fn a_missing_key_file_escalates_without_calling_the_endpoint() {
    let server = ScriptedLlm::start().await.expect("server");
    let mut llm = fast_llm_config(server.base_url());
    llm.api_key_file = Some(PathBuf::from("/nonexistent/salve/llm-key"));
    let (engine, _) = engine(DecideConfig {
        llm: Some(llm),
        ..DecideConfig::default()
    });
    let out = decide(&engine, &latency_alert()).await;
    assert_eq!(out.kind, OutcomeKind::LlmUnavailable);
    assert_eq!(
        out.decision.validation,
        "LlmUnavailable: the LLM call failed (ApiKey): cannot read the API key file /nonexistent/salve/llm-key: entity not found"
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_on_the_next_call() {
    let server = ScriptedLlm::start().await.expect("server");
    let answer = || Reply::escalate("");
    server.push(answer()).push(answer());
    let cfg = config(&server, "rotate");
    let path = cfg
        .llm
        .as_ref()
        .and_then(|l| l.api_key_file.clone())
        .expect("key file");
    let (engine, _) = engine(cfg);
    decide(&engine, &latency_alert()).await;
    std::fs::write(&path, "sk-rotated-abcdefghijklmnopqrstuv").expect("rotate");
    decide(&engine, &latency_alert()).await;
    let auth: Vec<Option<String>> = server
        .requests()
        .into_iter()
        .map(|r| r.authorization)
        .collect();
    assert_eq!(
        auth,
        vec![
            Some(format!("Bearer {KEY}")),
            Some("Bearer sk-rotated-abcdefghijklmnopqrstuv".to_owned())
        ]
    );
}

#[tokio::test]
async fn the_rules_fast_path_never_calls_the_llm() {
    let server = ScriptedLlm::start().await.expect("server");
    let (engine, _) = engine(config(&server, "rules"));
    let a = alert(
        "NodeFilesystemSpaceFillingUp",
        &[("instance", "web-3:9100"), ("mountpoint", "/")],
        &[],
    );
    let out = decide(&engine, &a).await;
    assert_eq!(out.kind, OutcomeKind::RulesMatched);
    let d = &out.decision;
    assert_eq!(d.source, DecisionSource::Rules);
    assert_eq!(d.playbook.as_deref(), Some("clear_disk_space"));
    assert_eq!(d.params, Some(json!({"host": "web-3"})));
    assert_eq!(
        (
            d.model.as_ref(),
            d.endpoint.as_ref(),
            d.prompt_hash.as_ref()
        ),
        (None, None, None)
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn an_alert_without_candidates_escalates_without_calling_the_llm() {
    let server = ScriptedLlm::start().await.expect("server");
    let (engine, registry) = engine(config(&server, "none"));
    let out = decide(
        &engine,
        &alert("KubePodCrashLooping", &[("namespace", "shop")], &[]),
    )
    .await;
    assert_eq!(out.kind, OutcomeKind::NoCandidate);
    assert_eq!(
        out.decision.validation,
        "NoCandidate: no valid catalog entry matches alert \"KubePodCrashLooping\""
    );
    assert!(server.requests().is_empty());
    assert!(
        metrics_text(&registry)
            .contains(r#"salve_decide_decisions_total{source="rules",outcome="NoCandidate"} 1"#)
    );
}

#[tokio::test]
async fn without_an_llm_the_rules_decide_or_the_incident_escalates() {
    let (engine, _) = engine(DecideConfig::default());
    let out = decide(&engine, &postgres_alert()).await;
    assert_eq!(out.kind, OutcomeKind::RulesFallback);
    assert_eq!(out.decision.playbook.as_deref(), Some("restart_service"));
    let out = decide(&engine, &latency_alert()).await;
    assert_eq!(out.kind, OutcomeKind::LlmDisabled);
    assert_eq!(
        out.decision.validation,
        "LlmDisabled: no LLM is configured and the rules cannot decide among 1 candidates"
    );
}

#[tokio::test]
async fn an_exhausted_daily_budget_falls_back_or_escalates_without_calling_the_llm() {
    let server = ScriptedLlm::start().await.expect("server");
    server.push(
        Reply::choose(
            "scale_pods",
            json!({"namespace": "shop", "deployment": "checkout", "replicas": 3}),
            "",
        )
        .with_usage(3000, 500),
    );
    let mut cfg = config(&server, "budget");
    cfg.daily_token_budget = Some(4000);
    let (engine, registry) = engine(cfg);
    // The first call fits; its reported usage (3500) is what remains charged.
    assert_eq!(
        decide(&engine, &latency_alert()).await.kind,
        OutcomeKind::LlmSelected
    );
    assert!(
        metrics_text(&registry).contains("salve_decide_budget_used_tokens 3500"),
        "{}",
        metrics_text(&registry)
    );
    // The next worst case (prompt estimate + max_tokens) no longer fits.
    let out = decide(&engine, &latency_alert()).await;
    assert_eq!(out.kind, OutcomeKind::OverBudget);
    assert!(
        out.decision.validation.starts_with("TokenBudgetExceeded: daily token budget exhausted: 3500 of 4000 tokens used in the last 24h"),
        "{}",
        out.decision.validation
    );
    let out = decide(&engine, &postgres_alert()).await;
    assert_eq!(out.kind, OutcomeKind::RulesFallback);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_prompt_over_the_per_decision_cap_is_not_sent() {
    let server = ScriptedLlm::start().await.expect("server");
    let mut cfg = config(&server, "cap");
    cfg.max_prompt_tokens = 300;
    let (engine, _) = engine(cfg);
    let out = decide(&engine, &latency_alert()).await;
    assert_eq!(out.kind, OutcomeKind::PromptTooLarge);
    assert!(
        out.decision
            .validation
            .starts_with("PromptTooLarge: the prompt for 1 candidates is about "),
        "{}",
        out.decision.validation
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn the_concurrency_limit_bounds_calls_in_flight() {
    let server = ScriptedLlm::start().await.expect("server");
    for _ in 0..4 {
        server.push(Reply::escalate("").after(Duration::from_millis(150)));
    }
    let mut cfg = config(&server, "concurrency");
    if let Some(llm) = cfg.llm.as_mut() {
        llm.max_concurrency = 1;
    }
    let (engine, _) = engine(cfg);
    let a = latency_alert();
    let r = report();
    let futures = (0..4).map(|_| engine.decide_with(&a, &r, now()));
    let outs = futures::future::join_all(futures).await;
    assert!(outs.iter().all(|o| o.kind == OutcomeKind::LlmEscalated));
    assert_eq!(server.max_in_flight(), 1);
}

#[tokio::test]
async fn secrets_in_the_alert_never_reach_the_endpoint() {
    let server = ScriptedLlm::start().await.expect("server");
    server.push(Reply::escalate(""));
    let (engine, _) = engine(config(&server, "redact"));
    let mut a = latency_alert();
    a.annotations.insert("description".into(), "probe https://admin:hunter2pass@db.internal/ failed; token=tok_9f8e7d6c5b4a; header Authorization: Bearer abcdefghijklmnop".into());
    a.annotations.insert(
        "key".into(),
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBk\n-----END EC PRIVATE KEY-----".into(),
    );
    a.labels.insert("aws".into(), "AKIAIOSFODNN7EXAMPLE".into());
    decide(&engine, &a).await;
    let raw = &server.requests()[0].raw;
    for secret in [
        "hunter2pass",
        "tok_9f8e7d6c5b4a",
        "abcdefghijklmnop",
        "MHcCAQEEIBk",
        "AKIAIOSFODNN7EXAMPLE",
    ] {
        assert!(!raw.contains(secret), "{secret} reached the endpoint");
    }
    assert!(raw.contains("[REDACTED]"));
}

#[tokio::test]
async fn the_public_decide_checks_catalogs_and_stamps_the_current_time() {
    let server = ScriptedLlm::start().await.expect("server");
    let (engine, _) = engine(config(&server, "public"));
    let before = Timestamp::now();
    let d = engine
        .decide(
            &alert(
                "SystemdUnitFailed",
                &[("instance", "db-1:9100"), ("name", "worker@0.service")],
                &[],
            ),
            &[demo_catalog()],
        )
        .await;
    assert_eq!(d.playbook.as_deref(), Some("restart_systemd_unit"));
    assert_eq!(
        d.params,
        Some(json!({"host": "db-1", "unit": "worker@0.service"}))
    );
    assert!(d.decided_at.0 >= before);
}

#[test]
fn an_invalid_configuration_is_refused_up_front() {
    let mut registry = Registry::default();
    let bad_url = DecideConfig {
        llm: Some(LlmConfig::new("https://u:p@api.example.com/v1", "m")),
        ..DecideConfig::default()
    };
    let err = DecisionEngine::new(bad_url, &mut registry).expect_err("credentials in URL");
    assert!(
        err.to_string()
            .contains("credentials do not belong in the URL"),
        "{err}"
    );
    let bad_pattern = DecideConfig {
        redaction: salve_decide::RedactionConfig {
            defaults: true,
            extra_patterns: vec!["[".into()],
        },
        ..DecideConfig::default()
    };
    assert!(DecisionEngine::new(bad_pattern, &mut registry).is_err());
}

#[tokio::test]
async fn failed_calls_are_charged_to_the_budget_only_when_the_model_may_have_worked() {
    let server = ScriptedLlm::start().await.expect("server");
    for _ in 0..3 {
        server.push(Reply::status(503, "overloaded"));
    }
    server.push(Reply::escalate("late").after(Duration::from_secs(3)));
    let mut cfg = slow_config(&server);
    cfg.daily_token_budget = Some(100_000);
    let (engine, registry) = engine(cfg);
    assert_eq!(
        decide(&engine, &postgres_alert()).await.kind,
        OutcomeKind::RulesFallback
    );
    assert!(
        metrics_text(&registry).contains("salve_decide_budget_used_tokens 0"),
        "{}",
        metrics_text(&registry)
    );
    // A timeout may have been billed: the reserved worst case stays charged.
    assert_eq!(
        decide(&engine, &postgres_alert()).await.kind,
        OutcomeKind::RulesFallback
    );
    let metrics = metrics_text(&registry);
    let used: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("salve_decide_budget_used_tokens "))
        .and_then(|v| v.trim().parse().ok())
        .expect("budget gauge");
    assert!(
        used > 256,
        "worst case = prompt estimate + max_tokens, got {used}"
    );
}
