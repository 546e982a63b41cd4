//! Chaos Mesh both ways, with the built binary:
//! - `export --to chaos-mesh`: every example experiment (and the fixtures
//!   under tests/fixtures/chaos-mesh/) exports to manifests that validate
//!   against Chaos Mesh's own CRD schemas (read from ../shared/chaos-mesh/crd/,
//!   made strict the way `kubectl apply --validate=strict` is: unknown fields
//!   are errors); the validator is shown to reject a wrong field, a wrong
//!   enum and a missing field; `--strict` fails on anything left out.
//! - manifests as input: the article's NetworkChaos (and its Schedule form)
//!   validate and plan; unsupported fields are errors naming the field; a
//!   faultline experiment uses a manifest as a `chaos_mesh:` step.
//! - live (root, Docker Engine, nftables): the article's manifest, unchanged,
//!   against a container labelled `app: cache-service` (busybox-static in a
//!   FROM scratch image built here), with the loss measured by 400 pings from
//!   the host: about half are lost. Runs under /tmp/faultline-itest.lock.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn out(o: &Output) -> String {
    text(o)
}

// ------------------------------------------------------------------ CRDs

/// The CRD directory: $FAULTLINE_CHAOS_MESH_CRDS, or `shared/chaos-mesh/crd`
/// next to the checkout or next to its parent (a worktree under wt/).
fn crd_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("FAULTLINE_CHAOS_MESH_CRDS") {
        return Some(PathBuf::from(d));
    }
    root()
        .ancestors()
        .skip(1)
        .take(3)
        .map(|a| a.join("shared/chaos-mesh/crd"))
        .find(|d| d.is_dir())
}

/// Every object with `properties` rejects other fields unless the schema
/// says it keeps unknown fields: what the API server's strict field
/// validation does (plain JSON Schema would let a typo through).
fn make_strict(v: &mut Value) {
    let Some(m) = v.as_object_mut() else { return };
    let preserve = m.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if m.contains_key("properties") && !m.contains_key("additionalProperties") && !preserve {
        m.insert("additionalProperties".into(), json!(false));
    }
    for key in ["properties", "patternProperties"] {
        if let Some(Value::Object(ps)) = m.get_mut(key) {
            for s in ps.values_mut() {
                make_strict(s);
            }
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(s) = m.get_mut(key) {
            if s.is_object() {
                make_strict(s);
            }
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(a)) = m.get_mut(key) {
            for s in a {
                make_strict(s);
            }
        }
    }
}

struct Crds {
    by_kind: BTreeMap<String, jsonschema::Validator>,
}

impl Crds {
    fn load() -> Option<Crds> {
        let dir = crd_dir()?;
        let mut by_kind = BTreeMap::new();
        for e in std::fs::read_dir(&dir).ok()? {
            let p = e.ok()?.path();
            if p.extension().and_then(|x| x.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let crd: Value = serde_yaml::from_str(&text).unwrap();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
            let mut schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
            assert!(schema.is_object(), "{}: no openAPIV3Schema", p.display());
            make_strict(&mut schema);
            let v = jsonschema::draft4::new(&schema)
                .unwrap_or_else(|e| panic!("{}: schema does not compile: {e}", p.display()));
            by_kind.insert(kind, v);
        }
        (!by_kind.is_empty()).then_some(Crds { by_kind })
    }

    /// The schema errors of one manifest (empty: valid).
    fn errors(&self, doc: &Value) -> Vec<String> {
        let kind = doc["kind"].as_str().unwrap_or("");
        let Some(v) = self.by_kind.get(kind) else {
            return vec![format!("no CRD for kind `{kind}`")];
        };
        let mut errs: Vec<String> = v
            .iter_errors(doc)
            .map(|e| format!("{}: {e}", e.instance_path))
            .collect();
        if doc["apiVersion"] != json!("chaos-mesh.org/v1alpha1") {
            errs.push(format!("apiVersion {}", doc["apiVersion"]));
        }
        errs
    }
}

fn crds_or_skip() -> Option<Crds> {
    let c = Crds::load();
    if c.is_none() {
        println!("skipped: Chaos Mesh CRDs not found (../shared/chaos-mesh/crd/ or $FAULTLINE_CHAOS_MESH_CRDS)");
    }
    c
}

/// The YAML documents of a text.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn export(file: &Path, extra: &[&str]) -> Output {
    Command::new(bin())
        .args(["export", "--to", "chaos-mesh"])
        .arg(file)
        .args(extra)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_exports_to_manifests_the_crds_accept() {
    let Some(crds) = crds_or_skip() else { return };
    // Every example (experiments/invalid/ holds deliberately broken files).
    let mut files = yaml_files(&root().join("experiments"));
    for d in std::fs::read_dir(root().join("experiments")).unwrap() {
        let d = d.unwrap().path();
        if d.is_dir() && d.file_name().is_some_and(|n| n != "invalid") {
            files.extend(yaml_files(&d));
        }
    }
    files.extend(yaml_files(&root().join("tests/fixtures/chaos-mesh")));
    assert!(files.len() >= 10, "{files:?}");
    let mut kinds = BTreeMap::<String, usize>::new();
    for f in &files {
        let o = export(f, &[]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", f.display(), out(&o));
        let text = String::from_utf8(o.stdout.clone()).unwrap();
        let docs = documents(&text);
        assert!(!docs.is_empty(), "{}: no manifest", f.display());
        for d in &docs {
            let errs = crds.errors(d);
            assert!(
                errs.is_empty(),
                "{}: {} invalid:\n{}\n{text}",
                f.display(),
                d["kind"],
                errs.join("\n")
            );
            count_kinds(d, &mut kinds);
        }
        // What is left out is said, on stderr and in the file.
        let err = String::from_utf8_lossy(&o.stderr);
        for line in err.lines().filter(|l| l.contains("not exported:")) {
            let why = line.split("not exported: ").nth(1).unwrap();
            let first = why.split(':').next().unwrap();
            assert!(
                text.contains(first),
                "{}: `{first}` not in the output",
                f.display()
            );
        }
    }
    // Every kind the exporter can write was written and checked at least once.
    for k in [
        "Workflow",
        "Schedule",
        "NetworkChaos",
        "StressChaos",
        "PodChaos",
        "IOChaos",
        "DNSChaos",
        "PhysicalMachineChaos",
        "StatusCheck",
    ] {
        assert!(
            kinds.get(k).copied().unwrap_or(0) > 0,
            "no {k} exported: {kinds:?}"
        );
    }
}

/// The kinds inside a Workflow or Schedule (its templates' types).
fn count_kinds(doc: &Value, kinds: &mut BTreeMap<String, usize>) {
    *kinds
        .entry(doc["kind"].as_str().unwrap().into())
        .or_default() += 1;
    let wf = if doc["kind"] == "Schedule" {
        &doc["spec"]["workflow"]
    } else {
        &doc["spec"]
    };
    for t in wf["templates"].as_array().into_iter().flatten() {
        let mut k = t["templateType"].as_str().unwrap_or("").to_string();
        if k == "Schedule" {
            k = t["schedule"]["type"].as_str().unwrap_or("").to_string();
        }
        *kinds.entry(k).or_default() += 1;
    }
}

#[test]
fn the_validator_is_strict() {
    let Some(crds) = crds_or_skip() else { return };
    let good: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("experiments/chaos-mesh/cache-packet-loss.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert!(crds.errors(&good).is_empty(), "{:?}", crds.errors(&good));
    let schedule: Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            root().join("experiments/chaos-mesh/cache-packet-loss-schedule.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        crds.errors(&schedule).is_empty(),
        "{:?}",
        crds.errors(&schedule)
    );

    let mut typo = good.clone();
    typo["spec"]["los"] = json!({"loss": "50"});
    let mut bad_enum = good.clone();
    bad_enum["spec"]["action"] = json!("drop");
    let mut bad_mode = good.clone();
    bad_mode["spec"]["mode"] = json!("every");
    let mut missing = good.clone();
    missing["spec"].as_object_mut().unwrap().remove("selector");
    let mut nested = good.clone();
    nested["spec"]["loss"]["percent"] = json!("50");
    let mut wrong_type = good.clone();
    wrong_type["spec"]["externalTargets"] = json!("10.0.0.1");
    let mut in_workflow = json!({
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"},
        "spec": {"entry": "e", "templates": [{"name": "e", "templateType": "NetworkChaos",
            "networkChaos": good["spec"].clone()}]}
    });
    assert!(
        crds.errors(&in_workflow).is_empty(),
        "{:?}",
        crds.errors(&in_workflow)
    );
    in_workflow["spec"]["templates"][0]["networkChaos"]["loss"]["lost"] = json!("1");
    for (what, doc) in [
        ("unknown field", typo),
        ("wrong action", bad_enum),
        ("wrong mode", bad_mode),
        ("missing selector", missing),
        ("unknown nested field", nested),
        ("wrong type", wrong_type),
        ("unknown field in a workflow task", in_workflow),
    ] {
        assert!(!crds.errors(&doc).is_empty(), "{what} passed the schema");
    }
}

#[test]
fn strict_fails_on_anything_left_out() {
    let lossy = root().join("experiments/cache-packet-loss.yaml");
    let o = export(&lossy, &["--strict"]);
    assert_eq!(o.status.code(), Some(64), "{}", out(&o));
    assert!(o.stdout.is_empty(), "--strict wrote output: {}", out(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("not exported: setup[0] (redis)"), "{e}");
    assert!(e.contains("--strict"), "{e}");

    let exact = root().join("tests/fixtures/chaos-mesh/exact.yaml");
    let o = export(&exact, &["--strict"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let docs = documents(&String::from_utf8_lossy(&o.stdout));
    let wf = &docs[0];
    assert_eq!(wf["kind"], "Workflow");
    let t = wf["spec"]["templates"].as_array().unwrap();
    let chaos = t
        .iter()
        .find(|t| t["templateType"] == "NetworkChaos")
        .unwrap();
    assert_eq!(chaos["deadline"], "5m");
    assert_eq!(chaos["networkChaos"]["action"], "loss");
    assert_eq!(chaos["networkChaos"]["loss"]["loss"], "50");
    assert_eq!(chaos["networkChaos"]["mode"], "all");
    assert_eq!(
        chaos["networkChaos"]["selector"]["labelSelectors"]["app"],
        "cache-service"
    );
    let before = t
        .iter()
        .find(|t| t["name"] == "before-cache-health")
        .unwrap();
    assert_eq!(before["statusCheck"]["mode"], "Synchronous");
    assert_eq!(before["abortWithStatusCheck"], true);

    // -o DIR writes one file named after the experiment.
    let sb = Sandbox::new();
    let o = export(&exact, &["-o", sb.path().join("m").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(sb.path().join("m/exactly-exportable.yaml").is_file());
}

#[test]
fn exported_schedule_and_container_targets() {
    let f = root().join("tests/fixtures/chaos-mesh/containers.yaml");
    let o = export(&f, &["--namespace", "shop"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let docs = documents(&String::from_utf8_lossy(&o.stdout));
    let s = &docs[0];
    assert_eq!(s["kind"], "Schedule");
    assert_eq!(s["metadata"]["namespace"], "shop");
    assert_eq!(
        s["spec"]["schedule"],
        "CRON_TZ=Europe/Berlin 0 9 * * 1,2,3,4,5"
    );
    let t = s["spec"]["workflow"]["templates"].as_array().unwrap();
    let by = |name: &str| {
        t.iter()
            .find(|x| x["name"].as_str().unwrap().contains(name))
            .unwrap()
            .clone()
    };
    let part = by("cut-the-database-off");
    assert_eq!(
        part["networkChaos"]["selector"]["namespaces"],
        json!(["shop"])
    );
    assert_eq!(
        part["networkChaos"]["selector"]["labelSelectors"]["com.docker.compose.service"],
        "db"
    );
    assert_eq!(part["networkChaos"]["direction"], "both");
    let bw = by("narrow-link");
    // The Compose project label becomes the namespace.
    assert_eq!(
        bw["networkChaos"]["selector"]["namespaces"],
        json!(["shop"])
    );
    assert_eq!(
        bw["networkChaos"]["selector"]["labelSelectors"],
        json!({"app": "cache-service"})
    );
    let lp = by("crash-loop");
    assert_eq!(lp["templateType"], "Schedule");
    assert_eq!(lp["schedule"]["schedule"], "@every 5s");
    assert_eq!(lp["schedule"]["podChaos"]["mode"], "fixed");
    assert_eq!(lp["schedule"]["podChaos"]["value"], "2");
    let during = by("during-shop-answers");
    assert_eq!(during["abortWithStatusCheck"], true);
    assert_eq!(during["statusCheck"]["failureThreshold"], 5);
    // The background step runs in parallel with everything after it.
    let par = by("method-with-2");
    assert_eq!(par["templateType"], "Parallel");
}

// ------------------------------------------------------ manifests as input

fn faultline(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_articles_manifests_validate_and_plan() {
    let f = root().join("experiments/chaos-mesh/cache-packet-loss.yaml");
    let o = faultline(&["validate", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let o = faultline(&["plan", "--format", "json", f.to_str().unwrap()]);
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", out(&o)));
    let step = &plan["steps"][0];
    let shown = step.to_string();
    assert!(shown.contains("packet_loss"), "{shown}");
    assert!(shown.contains("5m"), "{shown}");
    assert!(shown.contains("app=cache-service"), "{shown}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("correlation"),
        "{}",
        out(&o)
    );

    let s = root().join("experiments/chaos-mesh/cache-packet-loss-schedule.yaml");
    let o = faultline(&["plan", "--format", "json", s.to_str().unwrap()]);
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", out(&o)));
    assert!(
        plan["schedule"].to_string().contains("0 14 * * 1-5"),
        "{}",
        plan["schedule"]
    );
}

#[test]
fn unsupported_fields_are_errors_that_name_them() {
    let sb = Sandbox::new();
    let base = "apiVersion: chaos-mesh.org/v1alpha1\nkind: NetworkChaos\nmetadata: {name: x}\nspec:\n  action: loss\n  mode: all\n  duration: 10s\n  loss: {loss: \"50\"}\n";
    for (extra, field, words) in [
        ("  selector: {labelSelectors: {app: a}}\n  target: {mode: all, selector: {labelSelectors: {app: b}}}\n", "spec.target", "externalTargets"),
        ("  selector: {annotationSelectors: {a: b}}\n", "spec.selector.annotationSelectors", "labelSelectors"),
        ("  selector: {labelSelectors: {app: a}, namespaces: [a, b]}\n", "spec.selector.namespaces", "Compose project"),
        ("  selector: {labelSelectors: {app: a}}\n  remoteCluster: east\n", "spec.remoteCluster", "this host"),
        ("  selector: {labelSelectors: {app: a}}\n  externalTargets: [example.com]\n", "spec.externalTargets[0]", "host names"),
        ("  selector: {}\n", "spec.selector", "every container"),
    ] {
        let f = sb.write("m.yaml", &format!("{base}{extra}"));
        let o = faultline(&["validate", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(64), "{extra}: {}", out(&o));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(field) && e.contains(words), "{extra}: want {field}: {e}");
        // file:line:column points into the manifest.
        assert!(e.contains("m.yaml:"), "{e}");
    }
    // A kind faultline does not run, and a missing duration.
    let f = sb.write(
        "t.yaml",
        "apiVersion: chaos-mesh.org/v1alpha1\nkind: TimeChaos\nmetadata: {name: t}\nspec: {mode: all, selector: {labelSelectors: {app: a}}, timeOffset: -1h}\n",
    );
    let o = faultline(&["validate", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        out(&o).contains("TimeChaos is not supported"),
        "{}",
        out(&o)
    );
    let f2 = sb.write(
        "d.yaml",
        &(base.replace("  duration: 10s\n", "") + "  selector: {labelSelectors: {app: a}}\n"),
    );
    let o = faultline(&["validate", f2.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64), "{}", out(&o));
    assert!(
        out(&o).contains("spec.duration") && out(&o).contains("until the object is deleted"),
        "{}",
        out(&o)
    );
}

#[test]
fn workflows_and_multi_document_files_translate() {
    let sb = Sandbox::new();
    // Two objects in one file start together.
    let f = sb.write(
        "two.yaml",
        "apiVersion: chaos-mesh.org/v1alpha1\nkind: StressChaos\nmetadata: {name: burn}\nspec:\n  mode: all\n  selector: {namespaces: [shop], labelSelectors: {app: web}}\n  stressors: {cpu: {workers: 1, load: 50}}\n  duration: 20s\n---\napiVersion: chaos-mesh.org/v1alpha1\nkind: PodChaos\nmetadata: {name: kill}\nspec:\n  action: pod-kill\n  mode: fixed\n  value: \"1\"\n  selector: {pods: {shop: [shop-web-1]}}\n",
    );
    let o = faultline(&["plan", "--format", "json", f.to_str().unwrap()]);
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", out(&o)));
    let steps = plan["steps"].to_string();
    assert!(
        steps.contains("cpu_stress") && steps.contains("process_kill"),
        "{steps}"
    );
    assert!(steps.contains("com.docker.compose.project=shop"), "{steps}");
    assert!(steps.contains("container=shop-web-1"), "{steps}");

    // A Workflow with status checks before, during (aborting) and after.
    let wf = sb.write(
        "wf.yaml",
        r#"apiVersion: chaos-mesh.org/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  entry: entry
  templates:
    - {name: entry, templateType: Serial, deadline: 10m, children: [check-before, chaos-and-check, check-after]}
    - name: check-before
      templateType: StatusCheck
      deadline: 20s
      statusCheck: {mode: Synchronous, type: HTTP, successThreshold: 2, intervalSeconds: 1, http: {url: "http://127.0.0.1:9/", method: GET, criteria: {statusCode: "200"}}}
    - {name: chaos-and-check, templateType: Parallel, children: [check-during, loss]}
    - name: check-during
      templateType: StatusCheck
      deadline: 30s
      abortWithStatusCheck: true
      statusCheck: {mode: Continuous, type: HTTP, failureThreshold: 4, intervalSeconds: 1, http: {url: "http://127.0.0.1:9/", method: GET, criteria: {statusCode: "200"}}}
    - name: loss
      templateType: NetworkChaos
      deadline: 30s
      networkChaos: {action: loss, mode: all, selector: {labelSelectors: {app: cache-service}}, loss: {loss: "25"}}
    - name: check-after
      templateType: StatusCheck
      deadline: 40s
      statusCheck: {mode: Synchronous, type: HTTP, successThreshold: 3, http: {url: "http://127.0.0.1:9/", method: GET, criteria: {statusCode: "200"}}}
"#,
    );
    let o = faultline(&["plan", "--format", "json", wf.to_str().unwrap()]);
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", out(&o)));
    assert_eq!(plan["steps"][0]["kind"], "packet_loss", "{}", plan["steps"]);
    assert!(
        plan["steps"][0]["detail"]
            .to_string()
            .contains("for 30s in the background"),
        "{}",
        plan["steps"]
    );
    assert_eq!(plan["steps"][1]["kind"], "pause", "{}", plan["steps"]);
    assert_eq!(
        plan["probes"].as_array().unwrap().len(),
        1,
        "{}",
        plan["probes"]
    );
    assert!(
        plan["abort"].to_string().contains("4 consecutive failures"),
        "{}",
        plan["abort"]
    );
    assert!(
        plan["after"]
            .to_string()
            .contains("3 successes in a row within 40s"),
        "{}",
        plan["after"]
    );
    assert!(
        plan["probes"][0]["before"]
            .to_string()
            .contains("2 samples"),
        "{}",
        plan["probes"]
    );

    // Hostile nesting is refused, not followed until the stack ends.
    let mut deep = String::from("apiVersion: chaos-mesh.org/v1alpha1\nkind: Workflow\nmetadata: {name: d}\nspec:\n  entry: t0\n  templates:\n");
    for i in 0..5000 {
        deep.push_str(&format!(
            "    - {{name: t{i}, templateType: Serial, children: [t{}]}}\n",
            i + 1
        ));
    }
    let d = sb.write("deep.yaml", &deep);
    let o = faultline(&["validate", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64), "{}", out(&o));
    assert!(out(&o).contains("nested more than 64 deep"), "{}", out(&o));

    // A Task (a container image) is named as unsupported.
    let t = sb.write(
        "task.yaml",
        "apiVersion: chaos-mesh.org/v1alpha1\nkind: Workflow\nmetadata: {name: t}\nspec:\n  entry: e\n  templates:\n    - {name: e, templateType: Task, task: {container: {name: c}}}\n",
    );
    let o = faultline(&["validate", t.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64), "{}", out(&o));
    assert!(out(&o).contains("spec.templates[0].task"), "{}", out(&o));
}

#[test]
fn an_experiment_uses_a_manifest_as_a_step() {
    let sb = Sandbox::new();
    let manifest = root().join("experiments/chaos-mesh/cache-packet-loss.yaml");
    let f = sb.write(
        "exp.yaml",
        &format!(
            "title: step\nhypothesis: h\nsteady_state:\n  probes:\n    - name: p\n      tcp: {{host: 127.0.0.1, port: 9}}\nmethod:\n  - name: the article\n    chaos_mesh: {}\n    duration: 20s\n  - pause: 1s\n",
            manifest.display()
        ),
    );
    let o = faultline(&["plan", "--format", "json", f.to_str().unwrap()]);
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", out(&o)));
    let s = plan["steps"][0].to_string();
    assert!(
        s.contains("packet_loss") && s.contains("20s") && s.contains("the article"),
        "{s}"
    );
    // A missing manifest is an error at the step.
    let f = sb.write(
        "bad.yaml",
        "title: step\nhypothesis: h\nsteady_state:\n  probes:\n    - name: p\n      tcp: {host: 127.0.0.1, port: 9}\nmethod:\n  - chaos_mesh: nowhere.yaml\n    duration: 5s\n",
    );
    let o = faultline(&["validate", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64), "{}", out(&o));
    assert!(
        out(&o).contains("method[0].chaos_mesh") && out(&o).contains("nowhere.yaml"),
        "{}",
        out(&o)
    );
}

#[test]
fn exported_manifests_read_back() {
    let sb = Sandbox::new();
    for (fixture, kinds) in [
        ("exact.yaml", vec!["packet_loss"]),
        (
            "containers.yaml",
            vec![
                "packet_loss",
                "network",
                "partition",
                "bandwidth",
                "dns",
                "process_kill",
                "process_pause",
                "cpu_stress",
                "memory_stress",
                "file_corrupt",
            ],
        ),
    ] {
        let o = export(&root().join("tests/fixtures/chaos-mesh").join(fixture), &[]);
        assert_eq!(o.status.code(), Some(0), "{}", out(&o));
        let f = sb.write(fixture, &String::from_utf8_lossy(&o.stdout));
        let o = faultline(&["validate", f.to_str().unwrap()]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{fixture} does not read back: {}",
            out(&o)
        );
        let o = faultline(&["plan", "--format", "json", f.to_str().unwrap()]);
        let plan: Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", out(&o)));
        let got: Vec<&str> = plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["kind"].as_str())
            .filter(|k| *k != "pause")
            .collect();
        assert_eq!(got, kinds, "{fixture}: {}", plan["steps"]);
    }
}

// ------------------------------------------------------------------ live

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker runs")
}

fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(o.status.success(), "docker {args:?}: {}", out(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

/// A locally built image, removed on drop (after the containers using it:
/// declare it first).
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.0]);
    }
}

/// A FROM scratch image with busybox-static serving /www on port 8080.
fn build_image(sb: &Sandbox) -> Option<Image> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())?;
    let ctx = sb.path().join("image");
    std::fs::create_dir_all(ctx.join("www")).unwrap();
    std::fs::copy(busybox, ctx.join("busybox")).unwrap();
    std::fs::write(ctx.join("www/index.html"), "cache ok\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\nCMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    )
    .unwrap();
    let tag = "faultline-test/chaos-mesh-cache:1";
    let o = docker(&["build", "-q", "-t", tag, ctx.to_str().unwrap()]);
    assert!(o.status.success(), "docker build: {}", out(&o));
    Some(Image(tag.to_string()))
}

/// Share of `n` pings from the host that got no answer.
fn ping_loss(ip: &str, n: u32) -> f64 {
    let o = Command::new("ping")
        .args([
            "-q",
            "-n",
            "-c",
            &n.to_string(),
            "-i",
            "0.01",
            "-W",
            "1",
            ip,
        ])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    let received: u32 = s
        .split(',')
        .find(|p| p.contains("received"))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("ping said: {s}"));
    1.0 - received as f64 / n as f64
}

/// faultline tables inside the container's network namespace.
fn nft_tables_in(pid: &str) -> String {
    let o = Command::new("nsenter")
        .args(["-t", pid, "-n", "nft", "list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains("faultline"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn live_preconditions() -> bool {
    let ok = live_preconditions_here();
    if !ok && std::env::var("FAULTLINE_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("FAULTLINE_REQUIRE_DOCKER=1 but the live Chaos Mesh test cannot run (see above)");
    }
    ok
}

fn live_preconditions_here() -> bool {
    if !is_root() {
        println!("skipped: needs root (nftables in a container's network namespace)");
        return false;
    }
    for tool in ["docker", "nft", "nsenter", "ping"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            println!("skipped: `{tool}` is not installed");
            return false;
        }
    }
    if !docker(&["info"]).status.success() {
        println!("skipped: the Docker Engine is not reachable");
        return false;
    }
    true
}

/// A running `faultline run`: on drop (a failed assertion) SIGTERM makes it
/// roll back, and it is waited for.
struct RunGuard(std::process::Child);

impl Drop for RunGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = self.0.wait();
        }
    }
}

/// Runs `faultline run FILE` until the fault is in the container, measures,
/// stops the run and checks the rollback. Returns the loss measured.
fn run_and_measure(sb: &Sandbox, file: &Path, extra: &[&str], ip: &str, pid: &str) -> f64 {
    let mut run = RunGuard(
        sb.cmd()
            .arg("run")
            .arg(file)
            .args(["--journal", "journal.json", "--yes"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let injected = wait_until(Duration::from_secs(60), || !nft_tables_in(pid).is_empty());
    let loss = if injected {
        ping_loss(ip, 400)
    } else {
        f64::NAN
    };
    // Stop it (the 5m duration is the manifest's own): it rolls back.
    let o = sb
        .cmd()
        .args(["stop", "--all", "--reason", "measured"])
        .output()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = run.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the run did not end after stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read;
    run.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    run.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        injected,
        "the fault never reached the container\n{stdout}\n{stderr}\n{}",
        out(&o)
    );
    assert_eq!(
        status.code(),
        Some(2),
        "a stopped run is ABORTED (rolled back)\n{stdout}\n{stderr}"
    );
    assert!(
        nft_tables_in(pid).is_empty(),
        "faultline's nft table is still in the container"
    );
    let j = sb.journal();
    assert!(j.to_string().contains("packet_loss"), "{j}");
    loss
}

#[test]
fn the_articles_manifest_drops_about_half_of_a_containers_packets() {
    if !live_preconditions() {
        return;
    }
    let _lock = host_lock();
    let sb = Sandbox::new();
    let Some(image) = build_image(&sb) else {
        println!("skipped: busybox (static) is not installed");
        return;
    };
    let others = docker_ok(&["ps", "-q", "--filter", "label=app=cache-service"]);
    if !others.is_empty() {
        println!("skipped: other containers are labelled app=cache-service ({others}); the article's manifest would hit them too");
        return;
    }
    let name = format!("faultline-chaos-mesh-{}", std::process::id());
    let _c = Container(name.clone());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "app=cache-service",
        "--label",
        "faultline-test=chaos-mesh",
        &image.0,
    ]);
    let ip = docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &name,
    ]);
    let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", &name]);
    assert!(
        !ip.is_empty() && pid != "0",
        "container {name}: ip {ip}, pid {pid}"
    );
    let rules_before = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap()
        .stdout;

    let baseline = ping_loss(&ip, 100);
    assert!(
        baseline < 0.1,
        "the container loses {baseline} of pings before any fault"
    );

    // The manifest, unchanged; stopped once measured (its duration is 5m).
    let manifest = root().join("experiments/chaos-mesh/cache-packet-loss.yaml");
    let loss = run_and_measure(&sb, &manifest, &[], &ip, &pid);
    println!(
        "measured: {:.1}% of 400 pings lost under `loss: 50` (NetworkChaos)",
        loss * 100.0
    );
    assert!(
        (0.35..=0.65).contains(&loss),
        "loss {loss}: expected about 50%"
    );
    let after = ping_loss(&ip, 100);
    assert!(after < 0.1, "still losing {after} after the rollback");

    // The Schedule form, outside its window on purpose.
    let sb2 = Sandbox::new();
    let sched = root().join("experiments/chaos-mesh/cache-packet-loss-schedule.yaml");
    let loss = run_and_measure(&sb2, &sched, &["--outside-window"], &ip, &pid);
    println!(
        "measured: {:.1}% of 400 pings lost (Schedule form)",
        loss * 100.0
    );
    assert!(
        (0.35..=0.65).contains(&loss),
        "loss {loss}: expected about 50%"
    );

    // Docker's own rules on the host are as they were.
    let rules_after = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        String::from_utf8_lossy(&rules_before),
        String::from_utf8_lossy(&rules_after),
        "the host's nftables ruleset changed"
    );
}

#[test]
fn a_manifest_step_runs_to_a_verdict_inside_an_experiment() {
    if !live_preconditions() {
        return;
    }
    let _lock = host_lock();
    let sb = Sandbox::new();
    let Some(image) = build_image(&sb) else {
        println!("skipped: busybox (static) is not installed");
        return;
    };
    let others = docker_ok(&["ps", "-q", "--filter", "label=app=cache-service"]);
    if !others.is_empty() {
        println!("skipped: other containers are labelled app=cache-service ({others})");
        return;
    }
    let name = format!("faultline-chaos-mesh-step-{}", std::process::id());
    let _c = Container(name.clone());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "app=cache-service",
        &image.0,
    ]);
    let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", &name]);
    let manifest = root().join("experiments/chaos-mesh/cache-packet-loss.yaml");
    let f = sb.write(
        "exp.yaml",
        &format!(
            r#"title: The cache under the article's packet loss, judged
hypothesis: The cache still answers some requests under 50% loss and fully afterwards.
steady_state:
  interval: 500ms
  probes:
    - name: cache page
      http: {{container: {name}, port: 8080, path: /index.html}}
      timeout: 3s
      expect: {{status: 200, body_contains: cache ok}}
      before: {{samples: 2}}
      during: {{min_success: 10%}}
      after: {{within: 30s, successes: 2}}
method:
  - name: the article's manifest, for 8 seconds
    chaos_mesh: {manifest}
    duration: 8s
"#,
            manifest = manifest.display()
        ),
    );
    let o = sb.run(&f, &["--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        nft_tables_in(&pid).is_empty(),
        "faultline's nft table is still in the container"
    );
    let j = sb.journal().to_string();
    assert!(
        j.contains("packet_loss") && j.contains("the article"),
        "{j}"
    );
}

/// The compose-shop stack (experiments/compose-shop), down again on drop.
struct Shop(PathBuf);

impl Drop for Shop {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg(self.0.join("shop.sh"))
            .arg("down")
            .output();
    }
}

fn compose_available() -> bool {
    docker(&["compose", "version"]).status.success()
        || Command::new("docker-compose")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// The same, against the Compose service of the example stack that is
/// labelled `app: cache-service` (a namespace in Chaos Mesh is the Compose
/// project here: a copy of the manifest that also says `namespaces: [shop]`
/// hits the same container).
#[test]
fn the_articles_manifest_against_the_compose_shop() {
    if !live_preconditions() {
        return;
    }
    if !compose_available() {
        println!("skipped: neither `docker compose` nor `docker-compose` works");
        return;
    }
    if !Path::new("/usr/bin/redis-server").exists() {
        println!("skipped: redis-server missing (apt-get install redis-server)");
        return;
    }
    let _lock = host_lock();
    let others = docker_ok(&["ps", "-q", "--filter", "label=app=cache-service"]);
    if !others.is_empty() {
        println!("skipped: containers labelled app=cache-service are already running ({others})");
        return;
    }
    let dir = root().join("experiments/compose-shop");
    let shop = Shop(dir.clone());
    let o = Command::new("sh")
        .arg(dir.join("shop.sh"))
        .arg("up")
        .output()
        .unwrap();
    assert!(o.status.success(), "shop.sh up: {}", out(&o));
    let ip = docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        "shop-cache",
    ]);
    let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", "shop-cache"]);
    assert!(
        ping_loss(&ip, 100) < 0.1,
        "the cache loses pings before any fault"
    );

    let sb = Sandbox::new();
    let manifest = root().join("experiments/chaos-mesh/cache-packet-loss.yaml");
    let loss = run_and_measure(&sb, &manifest, &[], &ip, &pid);
    println!(
        "measured: {:.1}% of 400 pings to shop-cache lost (compose-shop)",
        loss * 100.0
    );
    assert!(
        (0.35..=0.65).contains(&loss),
        "loss {loss}: expected about 50%"
    );
    let j = sb.journal().to_string();
    assert!(
        j.contains("shop-cache"),
        "the journal names the container hit: {j}"
    );

    let sb = Sandbox::new();
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "    labelSelectors:\n",
        "    namespaces: [shop]\n    labelSelectors:\n",
    );
    assert!(text.contains("namespaces: [shop]"));
    let f = sb.write("namespaced.yaml", &text);
    let loss = run_and_measure(&sb, &f, &[], &ip, &pid);
    println!(
        "measured: {:.1}% lost with namespaces: [shop]",
        loss * 100.0
    );
    assert!(
        (0.35..=0.65).contains(&loss),
        "loss {loss}: expected about 50%"
    );
    drop(shop);
}
