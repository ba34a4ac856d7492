//! salve's CRDs on a real kube-apiserver: they install, the examples apply, status is written
//! by server-side apply, and the schema itself refuses bad objects with actionable messages.
#![allow(clippy::unwrap_used)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::{Api, Client};
use salve_api::{Incident, IncidentStatus, Phase, PlaybookCatalog};
use salve_tests::{admin, install_crds, namespace, repo_root, yaml};
use serde::Deserialize;
use serde_json::json;

async fn setup(prefix: &str) -> (Client, String) {
    let client = admin().await;
    install_crds(&client).await;
    let ns = namespace(&client, prefix).await;
    (client, ns)
}

fn example_incident(ns: &str) -> Incident {
    let mut inc: Incident = yaml("examples/incident.yaml");
    inc.metadata.namespace = Some(ns.to_owned());
    inc
}

/// The error message of a refused request (panics if it was accepted).
fn refused<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> String {
    match r {
        Ok(v) => panic!("the API server accepted an invalid object: {v:?}"),
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "expected 422 Invalid, got {s:?}");
            s.message
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn crds_install_become_established_and_carry_short_names_and_columns() {
    let client = admin().await;
    install_crds(&client).await;
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let inc = api.get("incidents.salve.dev").await.unwrap();
    assert_eq!(inc.spec.names.short_names, Some(vec!["inc".to_owned()]));
    let cols: Vec<String> = inc.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.name)
        .collect();
    for want in ["Phase", "Playbook", "Risk", "Age"] {
        assert!(
            cols.iter().any(|c| c == want),
            "missing printer column {want}: {cols:?}"
        );
    }
    assert!(
        inc.spec.versions[0]
            .subresources
            .as_ref()
            .unwrap()
            .status
            .is_some()
    );
    let pbc = api.get("playbookcatalogs.salve.dev").await.unwrap();
    assert_eq!(pbc.spec.names.short_names, Some(vec!["pbc".to_owned()]));
}

/// Every Incident and PlaybookCatalog under examples/ is accepted by the real API server.
#[tokio::test]
async fn every_example_applies() {
    let (client, ns) = setup("examples").await;
    let mut applied = Vec::new();
    let mut stack = vec![repo_root().join("examples")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if !matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let value =
                    serde_json::to_value(serde_yaml::Value::deserialize(doc).unwrap()).unwrap();
                let kind = value["kind"].as_str().unwrap_or_default().to_owned();
                if kind != "Incident" && kind != "PlaybookCatalog" {
                    continue;
                }
                let gvk = GroupVersionKind::gvk("salve.dev", "v1alpha1", &kind);
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &ns, &ApiResource::from_gvk(&gvk));
                let mut obj: DynamicObject = serde_json::from_value(value).unwrap();
                obj.metadata.namespace = Some(ns.clone());
                api.create(&PostParams::default(), &obj)
                    .await
                    .unwrap_or_else(|e| panic!("{} ({kind}) refused: {e}", path.display()));
                applied.push(format!("{}:{kind}", path.display()));
            }
        }
    }
    assert!(
        applied.iter().any(|a| a.ends_with(":Incident")),
        "no Incident example: {applied:?}"
    );
    assert!(
        applied
            .iter()
            .filter(|a| a.ends_with(":PlaybookCatalog"))
            .count()
            >= 1,
        "no PlaybookCatalog example: {applied:?}"
    );
}

#[tokio::test]
async fn status_written_by_server_side_apply_reads_back_under_field_manager_salve() {
    let (client, ns) = setup("status").await;
    let api: Api<Incident> = Api::namespaced(client, &ns);
    let inc = api
        .create(&PostParams::default(), &example_incident(&ns))
        .await
        .unwrap();
    let name = inc.metadata.name.clone().unwrap();
    let status = IncidentStatus {
        phase: Phase::AwaitingApproval,
        reason: Some("CancelWindow".into()),
        message: Some("runs at 01:05 unless cancelled".into()),
        ..Default::default()
    };
    let patch = json!({"apiVersion": "salve.dev/v1alpha1", "kind": "Incident", "status": status});
    api.patch_status(
        &name,
        &PatchParams::apply(salve_api::FIELD_MANAGER),
        &Patch::Apply(&patch),
    )
    .await
    .unwrap();
    let back = api.get(&name).await.unwrap();
    let st = back.status.unwrap();
    assert_eq!(st.phase, Phase::AwaitingApproval);
    assert_eq!(st.reason.as_deref(), Some("CancelWindow"));
    let managers = back.metadata.managed_fields.unwrap();
    assert!(
        managers
            .iter()
            .any(|m| m.manager.as_deref() == Some("salve")
                && m.subresource.as_deref() == Some("status")
                && m.operation.as_deref() == Some("Apply")),
        "no Apply by field manager salve on status: {managers:?}"
    );
    // The spec is untouched by a status write.
    assert_eq!(back.spec, inc.spec);
}

#[tokio::test]
async fn api_server_refuses_an_unknown_risk_tier_naming_the_allowed_values() {
    let (client, ns) = setup("risk").await;
    let mut cat: serde_json::Value =
        serde_json::to_value(yaml::<PlaybookCatalog>("examples/article-catalog.yaml")).unwrap();
    cat["metadata"]["namespace"] = json!(ns);
    cat["spec"]["entries"][0]["risk"] = json!("whenever");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client,
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "salve.dev",
            "v1alpha1",
            "PlaybookCatalog",
        )),
    );
    let msg = refused(
        api.create(
            &PostParams::default(),
            &serde_json::from_value(cat).unwrap(),
        )
        .await,
    );
    assert!(msg.contains("spec.entries[0].risk"), "{msg}");
    assert!(msg.contains("\"low\", \"medium\", \"high\""), "{msg}");
}

#[tokio::test]
async fn api_server_refuses_an_incident_without_a_fingerprint() {
    let (client, ns) = setup("required").await;
    let mut inc = serde_json::to_value(example_incident(&ns)).unwrap();
    inc["spec"].as_object_mut().unwrap().remove("fingerprint");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client,
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("salve.dev", "v1alpha1", "Incident")),
    );
    let msg = refused(
        api.create(
            &PostParams::default(),
            &serde_json::from_value(inc).unwrap(),
        )
        .await,
    );
    assert!(msg.contains("spec.fingerprint: Required value"), "{msg}");
}

#[tokio::test]
async fn api_server_refuses_any_edit_of_an_incident_spec() {
    let (client, ns) = setup("immutable").await;
    let api: Api<Incident> = Api::namespaced(client, &ns);
    let inc = api
        .create(&PostParams::default(), &example_incident(&ns))
        .await
        .unwrap();
    let name = inc.metadata.name.unwrap();
    let patch = json!({"spec": {"alert": {"labels": {"instance": "prod-db-1:9100"}}}});
    let msg = refused(
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
    assert!(msg.contains("Incident spec is immutable"), "{msg}");
    let patch = json!({"spec": {"dryRun": true}});
    let msg = refused(
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
    assert!(msg.contains("immutable"), "{msg}");
    // Annotations (how humans approve or cancel) stay editable.
    let patch = json!({"metadata": {"annotations": {"salve.dev/cancel": "true"}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn api_server_refuses_catalog_mistakes_a_gitops_user_can_make() {
    let (client, ns) = setup("catalog").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        client,
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "salve.dev",
            "v1alpha1",
            "PlaybookCatalog",
        )),
    );
    let base: serde_json::Value =
        serde_json::to_value(yaml::<PlaybookCatalog>("examples/article-catalog.yaml")).unwrap();
    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "duplicate entry names",
            Box::new(|c| {
                let first = c["spec"]["entries"][0].clone();
                c["spec"]["entries"].as_array_mut().unwrap().push(first);
            }),
            "Duplicate value",
        ),
        (
            "playbook path escaping the project",
            Box::new(|c| c["spec"]["entries"][0]["playbook"] = json!("roles/../../etc/evil.yml")),
            "without '..'",
        ),
        (
            "parameters that are not an object schema",
            Box::new(|c| c["spec"]["entries"][0]["parameters"] = json!({"type": "string"})),
            "spec.entries[0].parameters.type: Unsupported value: \"string\": supported values: \"object\"",
        ),
        (
            "an entry name with spaces",
            Box::new(|c| c["spec"]["entries"][0]["name"] = json!("rm -rf")),
            "spec.entries[0].name",
        ),
        (
            "an unbounded maxAttempts",
            Box::new(|c| c["spec"]["entries"][0]["maxAttempts"] = json!(50)),
            "spec.entries[0].maxAttempts",
        ),
        (
            "no entries",
            Box::new(|c| c["spec"]["entries"] = json!([])),
            "spec.entries",
        ),
    ];
    for (i, (what, mutate, want)) in cases.into_iter().enumerate() {
        let mut cat = base.clone();
        cat["metadata"]["name"] = json!(format!("bad-{i}"));
        cat["metadata"]["namespace"] = json!(ns);
        mutate(&mut cat);
        let msg = refused(
            api.create(
                &PostParams::default(),
                &serde_json::from_value(cat).unwrap(),
            )
            .await,
        );
        assert!(msg.contains(want), "{what}: expected {want:?} in {msg}");
    }
}

/// `kubectl get inc` shows the printer columns and `kubectl explain` shows the field docs.
#[tokio::test]
async fn kubectl_shows_columns_and_explains_fields() {
    let (client, ns) = setup("kubectl").await;
    let api: Api<Incident> = Api::namespaced(client, &ns);
    api.create(&PostParams::default(), &example_incident(&ns))
        .await
        .unwrap();
    let env = std::fs::read_to_string(salve_tests::cluster_dir().join("env")).unwrap();
    let kubectl = env
        .lines()
        .find_map(|l| l.strip_prefix("SALVE_KUBECTL="))
        .unwrap()
        .to_owned();
    let kubeconfig = salve_tests::cluster_dir().join("kubeconfig");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = run(&["get", "inc", "-n", &ns]);
    let header = table.lines().next().unwrap();
    for col in ["NAME", "PHASE", "ALERT", "PLAYBOOK", "RISK", "AGE"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(table.contains("NodeFilesystemSpaceFillingUp"), "{table}");
    let explain = run(&["explain", "incident.spec.fingerprint"]);
    assert!(
        explain.contains("fingerprint of the alert's label set"),
        "{explain}"
    );
}
