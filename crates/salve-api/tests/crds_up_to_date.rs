//! `crds/` is generated from the Rust types; this fails when someone changed one without the
//! other. Fix with `make generate`.

#[test]
fn crds_directory_matches_what_the_types_generate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    let mut expected = Vec::new();
    for crd in salve_api::crds() {
        let name = crd.metadata.name.clone().expect("generated CRDs are named");
        let file = format!("{name}.yaml");
        let want = salve_api::crd_yaml(&crd).expect("CRDs serialize to YAML");
        let have = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
        assert!(
            have == want,
            "crds/{file} is out of date with crates/salve-api: run `make generate`"
        );
        expected.push(file);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .map(|e| {
            e.expect("readable entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    present.sort();
    expected.sort();
    assert_eq!(present, expected, "crds/ holds files no type generates");
}

#[test]
fn every_schema_field_is_documented_for_kubectl_explain() {
    fn walk(path: &str, v: &serde_json::Value, missing: &mut Vec<String>) {
        let Some(props) = v.get("properties").and_then(|p| p.as_object()) else {
            if let Some(items) = v.get("items") {
                walk(&format!("{path}[]"), items, missing);
            }
            return;
        };
        for (name, schema) in props {
            let p = format!("{path}.{name}");
            // metav1.Condition comes documented from k8s-openapi; apiVersion/kind/metadata are standard.
            let standard = matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
            if !standard && schema.get("description").is_none() {
                missing.push(p.clone());
            }
            walk(&p, schema, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in salve_api::crds() {
        let v = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema serializes");
        walk(&crd.spec.names.kind, &v["openAPIV3Schema"], &mut missing);
    }
    assert!(missing.is_empty(), "fields without a /// doc: {missing:?}");
}
