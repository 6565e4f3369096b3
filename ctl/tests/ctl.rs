//! ctl as a subprocess against a real apiserver and etcd: apply (three-way), the
//! zhidan manifests, generators, tables, edit, the metadata and node verbs, rollout,
//! wait, and bad input.

use std::path::PathBuf;
use std::process::Output;

struct Cluster {
    _etcd: testkit::Etcd,
    apiserver: testkit::ApiServer,
    dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    cluster_with(&[]).await
}

async fn cluster_with(flags: &[&str]) -> Cluster {
    let etcd = testkit::Etcd::start().await.expect("etcd starts");
    let apiserver = testkit::ApiServer::start_with(&etcd.endpoints(), flags).await.expect("the apiserver starts");
    let dir = tempfile::tempdir().expect("a temp dir");
    Cluster { _etcd: etcd, apiserver, dir }
}

impl Cluster {
    fn ctl(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_ctl"))
            .arg(format!("--server={}", self.apiserver.grpc_endpoint()))
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("ctl runs")
    }

    fn ctl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ctl"));
        command.arg(format!("--server={}", self.apiserver.grpc_endpoint())).args(args).env_remove("KUBECONFIG");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().expect("ctl runs")
    }

    /// Runs ctl and insists that it succeeds; returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.ctl(args);
        assert!(output.status.success(), "ctl {args:?} failed: {}", stderr(&output));
        stdout(&output)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write manifest");
        path
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const DEMO: &str = include_str!("../../deploy/examples/demo.yaml");

#[tokio::test]
async fn apply_creates_then_reports_unchanged_then_configured() {
    let cluster = cluster().await;
    let demo = cluster.file("demo.yaml", DEMO);
    let demo = demo.to_str().expect("utf-8 path");

    let first = cluster.ctl(&["apply", "-f", demo]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        stdout(&first),
        "namespace/demo created\nconfigmap/greeting created\nservice/web created\nreplicaset.apps/web created\n"
    );

    let again = cluster.ctl(&["apply", "-f", demo]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        stdout(&again),
        "namespace/demo unchanged\nconfigmap/greeting unchanged\nservice/web unchanged\nreplicaset.apps/web unchanged\n"
    );

    let changed = cluster.file("changed.yaml", &DEMO.replace("hello from the API", "changed"));
    let third = cluster.ctl(&["apply", "-f", changed.to_str().expect("utf-8 path")]);
    assert!(stdout(&third).contains("configmap/greeting configured"), "{}", stdout(&third));

    let yaml = cluster.ctl(&["get", "configmap", "greeting", "-n", "demo", "-o", "yaml"]);
    assert!(yaml.status.success(), "{}", stderr(&yaml));
    assert!(stdout(&yaml).contains("message: changed"), "{}", stdout(&yaml));

    let table = cluster.ctl(&["get", "svc", "-n", "demo"]);
    let text = stdout(&table);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.contains("NodePort") && text.contains("80:3"), "{text}");
}

#[tokio::test]
async fn a_bad_document_fails_with_its_path_and_the_others_still_apply() {
    let cluster = cluster().await;
    let bad = cluster.file(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n    nodeport: 30080\n",
    );
    let output = cluster.ctl(&["apply", "-f", bad.to_str().expect("utf-8 path")]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(error.contains("spec.ports[0].nodeport"), "{error}");
    assert!(error.contains("nodePort"), "{error}");
    assert_eq!(stdout(&output), "configmap/fine created\n");
    cluster.ok(&["get", "configmap", "fine"]);
    let svc = cluster.ctl(&["get", "svc", "web"]);
    assert!(stderr(&svc).contains("NotFound"), "{}", stderr(&svc));
}

#[tokio::test]
async fn delete_by_name_and_unknown_kinds_fail_clearly() {
    let cluster = cluster().await;
    let file = cluster.file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: doomed\ndata:\n  a: b\n");
    assert!(cluster.ctl(&["create", "-f", file.to_str().expect("utf-8 path")]).status.success());

    let deleted = cluster.ctl(&["delete", "cm", "doomed"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert_eq!(stdout(&deleted), "configmap \"doomed\" deleted\n");

    let unknown = cluster.ctl(&["get", "widgets"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("doesn't have a resource type \"widgets\""), "{}", stderr(&unknown));
}

fn resource_version(cluster: &Cluster, what: &[&str]) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "jsonpath={.metadata.resourceVersion}"]);
    cluster.ok(&args)
}

#[tokio::test]
async fn a_second_apply_writes_nothing_and_dropped_fields_are_removed() {
    let cluster = cluster().await;
    let v1 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: three\n  labels: {a: \"1\", b: \"2\"}\ndata: {x: \"1\", y: \"2\"}\n";
    let path = cluster.file("cm.yaml", v1);
    let path = path.to_str().expect("utf-8 path");
    assert_eq!(cluster.ok(&["apply", "-f", path]), "configmap/three created\n");
    // Someone else's label survives applies that never mentioned it.
    cluster.ok(&["label", "cm", "three", "other=kept"]);
    let before = resource_version(&cluster, &["cm", "three"]);
    assert_eq!(cluster.ok(&["apply", "-f", path]), "configmap/three unchanged\n");
    assert_eq!(resource_version(&cluster, &["cm", "three"]), before, "an unchanged apply wrote");

    cluster.file("cm.yaml", &v1.replace(", b: \"2\"", "").replace(", y: \"2\"", ""));
    assert_eq!(cluster.ok(&["apply", "-f", path]), "configmap/three configured\n");
    let labels = cluster.ok(&["get", "cm", "three", "-o", "jsonpath={.metadata.labels}"]);
    assert_eq!(labels, r#"{"a":"1","other":"kept"}"#);
    assert_eq!(cluster.ok(&["get", "cm", "three", "-o", "jsonpath={.data}"]), r#"{"x":"1"}"#);
    let saved = cluster.ok(&[
        "get",
        "cm",
        "three",
        "-o",
        "jsonpath={.metadata.annotations.kubectl\\.kubernetes\\.io/last-applied-configuration}",
    ]);
    assert!(saved.contains(r#""data":{"x":"1"}"#), "{saved}");
}

#[tokio::test]
async fn zhidan_namespace_and_deployments_apply_and_the_web_service_fails_strictly() {
    // The manifests' ClusterIPs are in 192.168.0.0/16.
    let cluster = cluster_with(&["--service-cluster-ip-range=192.168.0.0/16"]).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/zhidan");
    let output = cluster.ctl(&["apply", "-f", dir]);
    assert!(!output.status.success(), "a failed document must fail the command");
    let out = stdout(&output);
    for line in [
        "namespace/zhidan created",
        "deployment.apps/zhidan-deploy-server created",
        "deployment.apps/zhidan-deploy-web created",
        "service/zhidan-server created",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    let err = stderr(&output);
    assert!(err.contains("zhidan.svc.web.yaml") && err.contains("spec.ports[0].nodeport"), "{err}");
    assert!(err.contains("strict decoding error"), "{err}");
    assert!(err.contains("1 object(s) failed"), "{err}");

    let names = cluster.ok(&["get", "deploy", "-n", "zhidan", "-o", "name"]);
    assert_eq!(names, "deployment.apps/zhidan-deploy-server\ndeployment.apps/zhidan-deploy-web\n");
    let again = cluster.ctl(&["apply", "-f", dir]);
    assert!(stdout(&again).contains("deployment.apps/zhidan-deploy-web unchanged"), "{}", stdout(&again));
}

/// Table text with ages replaced and runs of spaces collapsed, for golden comparisons.
fn normalise(table: &str) -> String {
    table
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(|cell| {
                    let digits = cell.trim_end_matches(['s', 'm', 'h', 'd']);
                    if !digits.is_empty() && digits.len() < cell.len() && digits.chars().all(|c| c.is_ascii_digit()) {
                        "<age>"
                    } else {
                        cell
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const TABLE_OBJECTS: &str = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: settings, labels: {app: web}}
data: {a: "1", b: "2"}
---
apiVersion: v1
kind: Secret
metadata: {name: token}
data: {t: aGk=}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  clusterIP: 10.96.0.50
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080, nodePort: 30080}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: busybox}]
---
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {node-role.kubernetes.io/worker: ""}}
---
apiVersion: v1
kind: Pod
metadata: {name: lone}
spec:
  nodeName: node-1
  containers: [{name: c, image: busybox}]
"#;

#[tokio::test]
async fn tables_match_kubectl_layouts() {
    let cluster = cluster().await;
    let path = cluster.file("objects.yaml", TABLE_OBJECTS);
    cluster.ok(&["apply", "-f", path.to_str().expect("utf-8 path")]);

    let golden = [
        (vec!["get", "cm"], "NAME DATA AGE\nsettings 2 <age>"),
        (vec!["get", "secrets"], "NAME TYPE DATA AGE\ntoken Opaque 1 <age>"),
        (
            vec!["get", "svc"],
            "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE\nweb NodePort 10.96.0.50 <none> 80:30080/TCP <age>",
        ),
        (
            vec!["get", "svc", "-o", "wide"],
            "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR\nweb NodePort 10.96.0.50 <none> 80:30080/TCP <age> app=web",
        ),
        (vec!["get", "deploy"], "NAME READY UP-TO-DATE AVAILABLE AGE\nweb 0/2 0 0 <age>"),
        (
            vec!["get", "deployments.apps", "-o", "wide"],
            "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR\nweb 0/2 0 0 <age> web busybox app=web",
        ),
        (vec!["get", "no"], "NAME STATUS ROLES AGE VERSION\nnode-1 Unknown worker <age>"),
        (vec!["get", "po"], "NAME READY STATUS RESTARTS AGE\nlone 0/1 Pending 0 <age>"),
        (vec!["get", "pod", "--no-headers"], "lone 0/1 Pending 0 <age>"),
        (vec!["get", "cm", "--show-labels"], "NAME DATA AGE LABELS\nsettings 2 <age> app=web"),
        (
            vec!["get", "cm,secret"],
            "NAME DATA AGE\nconfigmap/settings 2 <age>\n\nNAME TYPE DATA AGE\nsecret/token Opaque 1 <age>",
        ),
        (vec!["get", "cm", "-o", "custom-columns=NAME:.metadata.name,KEYS:.data.a"], "NAME KEYS\nsettings 1"),
        (
            vec!["get", "ns", "-A", "--no-headers", "-o", "custom-columns=N:.metadata.name"],
            "default\nkube-node-lease\nkube-public\nkube-system",
        ),
        (vec!["get", "pv"], ""),
    ];
    for (args, want) in golden {
        let got = normalise(&cluster.ok(&args));
        assert_eq!(got, want, "ctl {args:?}");
    }
    let jsonpath =
        cluster.ok(&["get", "po", "-o", "jsonpath={range .items[*]}{.metadata.name}@{.spec.nodeName}{\"\\n\"}{end}"]);
    assert_eq!(jsonpath, "lone@node-1\n");
    let all = cluster.ok(&["get", "pods", "-A"]);
    assert!(normalise(&all).starts_with("NAMESPACE NAME READY STATUS RESTARTS AGE\ndefault lone"), "{all}");
}

#[tokio::test]
async fn generators_print_manifests_that_decode_back() {
    let cluster = cluster().await;
    let yaml = cluster.ok(&[
        "create",
        "deployment",
        "nginx-app",
        "--image=nginx",
        "--replicas=2",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    assert!(yaml.contains("kind: Deployment") && yaml.contains("app: nginx-app"), "{yaml}");
    let none = cluster.ctl(&["get", "deploy", "nginx-app"]);
    assert!(!none.status.success(), "a client dry run created the object");
    let path = cluster.file("nginx-app.yaml", &yaml);
    assert_eq!(cluster.ok(&["apply", "-f", path.to_str().expect("utf-8 path")]), "deployment.apps/nginx-app created\n");
    assert_eq!(
        cluster.ok(&["get", "deploy", "nginx-app", "-o", "jsonpath={.spec.template.spec.containers[0].name}"]),
        "nginx"
    );

    for args in [
        vec!["create", "namespace", "gen", "--dry-run=client", "-o", "json"],
        vec!["create", "configmap", "c", "--from-literal=a=b", "--dry-run=client", "-o", "json"],
        vec!["create", "secret", "generic", "s", "--from-literal=pw=hunter2", "--dry-run=client", "-o", "json"],
        vec!["create", "job", "j", "--image=busybox", "--dry-run=client", "-o", "json", "--", "echo", "hi"],
        vec!["create", "cronjob", "cj", "--image=busybox", "--schedule=*/5 * * * *", "--dry-run=client", "-o", "json"],
        vec!["run", "p", "--image=busybox", "--dry-run=client", "-o", "json"],
        vec![
            "expose",
            "deployment",
            "nginx-app",
            "--port=80",
            "--target-port=8080",
            "--type=NodePort",
            "--dry-run=client",
            "-o",
            "json",
        ],
    ] {
        let json = cluster.ok(&args);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{args:?}: {e}\n{json}"));
        let path = cluster.file("generated.json", &json);
        let created = cluster.ok(&["create", "-f", path.to_str().expect("utf-8 path")]);
        assert!(created.ends_with(" created\n"), "{args:?}: {created}");
        if value["kind"] == "Secret" {
            assert_eq!(value["data"]["pw"], "aHVudGVyMg==");
        }
    }
    let svc = cluster.ok(&["get", "svc", "nginx-app", "-o", "jsonpath={.spec.type} {.spec.ports[0].targetPort}"]);
    assert_eq!(svc, "NodePort 8080");

    // A client dry run needs no cluster at all, as with kubectl.
    let offline = std::process::Command::new(env!("CARGO_BIN_EXE_ctl"))
        .args(["create", "deployment", "nginx-app", "--image=nginx", "-o", "yaml", "--dry-run=client"])
        .env_remove("KUBECONFIG")
        .env("HOME", cluster.dir.path())
        .output()
        .expect("ctl runs");
    assert!(offline.status.success(), "{}", stderr(&offline));
    assert_eq!(stdout(&offline), yaml.replace("replicas: 2", "replicas: 1"));
}

#[tokio::test]
async fn edit_round_trips_through_a_scripted_editor_and_reopens_on_errors() {
    let cluster = cluster().await;
    cluster.ok(&["create", "configmap", "ed", "--from-literal=x=1"]);
    // First save adds an unknown field; the reopened file (which carries the error
    // on top) is then fixed and a value changed.
    let script = cluster.file(
        "editor.sh",
        "#!/bin/sh\nif grep -q 'was not valid' \"$1\"; then\n  grep -q 'bogus' \"$1\" || exit 3\n  sed -i '/^bogus:/d; s/^  x: .*/  x: edited/' \"$1\"\nelse\n  echo 'bogus: 1' >> \"$1\"\nfi\n",
    );
    let sh = |path: &PathBuf| format!("sh {}", path.display());
    let output = cluster.ctl_env(&["edit", "cm", "ed"], &[("EDITOR", &sh(&script)), ("KUBE_EDITOR", "")]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "configmap/ed edited\n");
    assert!(stderr(&output).contains("reopening"), "{}", stderr(&output));
    assert_eq!(cluster.ok(&["get", "cm", "ed", "-o", "jsonpath={.data.x}"]), "edited");

    let before = resource_version(&cluster, &["cm", "ed"]);
    let unchanged = cluster.ctl_env(&["edit", "cm", "ed"], &[("EDITOR", "true"), ("KUBE_EDITOR", "")]);
    assert!(unchanged.status.success(), "{}", stderr(&unchanged));
    assert_eq!(stdout(&unchanged), "Edit cancelled, no changes made.\n");
    assert_eq!(resource_version(&cluster, &["cm", "ed"]), before);
}

#[tokio::test]
async fn label_annotate_scale_patch_set_image_round_trips() {
    let cluster = cluster().await;
    cluster.ok(&["create", "deployment", "web", "--image=busybox"]);
    assert_eq!(cluster.ok(&["label", "deploy", "web", "tier=front"]), "deployment.apps/web labeled\n");
    let clash = cluster.ctl(&["label", "deploy", "web", "tier=back"]);
    assert!(!clash.status.success() && stderr(&clash).contains("--overwrite is false"), "{}", stderr(&clash));
    cluster.ok(&["label", "deploy", "web", "tier=back", "--overwrite"]);
    assert_eq!(cluster.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.labels.tier}"]), "back");
    cluster.ok(&["label", "deploy", "web", "tier-"]);
    assert_eq!(cluster.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.labels}"]), r#"{"app":"web"}"#);

    assert_eq!(cluster.ok(&["annotate", "deploy", "web", "note=hello world"]), "deployment.apps/web annotated\n");
    assert_eq!(cluster.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.annotations.note}"]), "hello world");
    cluster.ok(&["annotate", "deploy", "web", "note-"]);
    assert_eq!(cluster.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.annotations.note}"]), "");

    assert_eq!(cluster.ok(&["scale", "deploy/web", "--replicas=3"]), "deployment.apps/web scaled\n");
    assert_eq!(cluster.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "3");
    let wrong = cluster.ctl(&["scale", "deploy/web", "--replicas=1", "--current-replicas=2"]);
    assert!(!wrong.status.success(), "a failed precondition scaled anyway");

    assert_eq!(
        cluster.ok(&["patch", "deploy", "web", "-p", r#"{"spec":{"replicas":5}}"#]),
        "deployment.apps/web patched\n"
    );
    cluster.ok(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
    ]);
    assert_eq!(cluster.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "4");
    assert_eq!(
        cluster.ok(&["patch", "deploy", "web", "-p", r#"{"spec":{"replicas":4}}"#]),
        "deployment.apps/web patched (no change)\n"
    );
    let bad = cluster.ctl(&["patch", "deploy", "web", "-p", r#"{"spec":{"replicaz":4}}"#]);
    assert!(!bad.status.success() && stderr(&bad).contains("replicaz"), "{}", stderr(&bad));

    assert_eq!(
        cluster.ok(&["set", "image", "deploy/web", "busybox=busybox:1.36"]),
        "deployment.apps/web image updated\n"
    );
    assert_eq!(
        cluster.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]),
        "busybox:1.36"
    );
    let missing = cluster.ctl(&["set", "image", "deploy/web", "nope=x"]);
    assert!(stderr(&missing).contains("unable to find container named \"nope\""), "{}", stderr(&missing));
}

#[tokio::test]
async fn node_verbs_cordon_taint_and_drain() {
    let cluster = cluster().await;
    let objects = cluster.file(
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: lone}\nspec:\n  nodeName: node-1\n  containers: [{name: c, image: busybox}]\n",
    );
    cluster.ok(&["apply", "-f", objects.to_str().expect("utf-8 path")]);
    assert_eq!(cluster.ok(&["cordon", "node-1"]), "node/node-1 cordoned\n");
    assert_eq!(cluster.ok(&["cordon", "node-1"]), "node/node-1 already cordoned\n");
    assert!(normalise(&cluster.ok(&["get", "nodes"])).contains("node-1 Unknown,SchedulingDisabled"));
    assert_eq!(cluster.ok(&["uncordon", "node-1"]), "node/node-1 uncordoned\n");
    assert_eq!(cluster.ok(&["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"]), "");

    assert_eq!(cluster.ok(&["taint", "nodes", "node-1", "dedicated=gpu:NoSchedule"]), "node/node-1 tainted\n");
    let taints = cluster.ok(&[
        "get",
        "node",
        "node-1",
        "-o",
        "jsonpath={.spec.taints[0].key}={.spec.taints[0].value}:{.spec.taints[0].effect}",
    ]);
    assert_eq!(taints, "dedicated=gpu:NoSchedule");
    let again = cluster.ctl(&["taint", "nodes", "node-1", "dedicated=gpu:NoSchedule"]);
    assert!(!again.status.success() && stderr(&again).contains("--overwrite is false"));
    assert_eq!(cluster.ok(&["taint", "nodes", "node-1", "dedicated:NoSchedule-"]), "node/node-1 untainted\n");
    assert_eq!(cluster.ok(&["get", "node", "node-1", "-o", "jsonpath={.spec.taints}"]), "");
    cluster.ok(&["taint", "nodes", "node-1", "a=b:NoExecute"]);
    assert_eq!(cluster.ok(&["taint", "nodes", "node-1", "a-"]), "node/node-1 untainted\n");

    let refused = cluster.ctl(&["drain", "node-1"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("cannot delete Pods that declare no controller"), "{}", stderr(&refused));
    let drained = cluster.ok(&["drain", "node-1", "--force", "--grace-period=0", "--timeout=30s"]);
    assert_eq!(
        drained,
        "node/node-1 already cordoned\nevicting pod default/lone\npod/lone evicted\nnode/node-1 drained\n"
    );
    assert!(!cluster.ctl(&["get", "pod", "lone"]).status.success(), "the drained pod is still there");
}

#[tokio::test]
async fn rollout_status_wait_and_history_follow_the_status() {
    let cluster = cluster().await;
    cluster.ok(&["create", "deployment", "web", "--image=busybox", "--replicas=2"]);
    let waiting = cluster.ok(&["rollout", "status", "deploy/web", "--watch=false"]);
    assert!(waiting.starts_with("Waiting for deployment"), "{waiting}");
    let timed_out = cluster.ctl(&["wait", "--for=condition=Available", "deploy/web", "--timeout=1s"]);
    assert!(!timed_out.status.success() && stderr(&timed_out).contains("timed out"), "{}", stderr(&timed_out));

    // No controller-manager runs here: the test writes the status a finished rollout has.
    let status = r#"{"status":{"observedGeneration":1,"replicas":2,"updatedReplicas":2,"readyReplicas":2,"availableReplicas":2,"conditions":[{"type":"Available","status":"True"}]}}"#;
    cluster.ok(&["patch", "deploy", "web", "--subresource=status", "-p", status]);
    assert_eq!(
        cluster.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]),
        "deployment \"web\" successfully rolled out\n"
    );
    assert_eq!(
        cluster.ok(&["wait", "--for=condition=Available", "deploy/web", "--timeout=30s"]),
        "deployment.apps/web condition met\n"
    );
    assert_eq!(cluster.ok(&["rollout", "pause", "deploy/web"]), "deployment.apps/web paused\n");
    assert!(!cluster.ctl(&["rollout", "restart", "deploy/web"]).status.success(), "a paused deployment restarted");
    assert_eq!(cluster.ok(&["rollout", "resume", "deploy/web"]), "deployment.apps/web resumed\n");
    assert_eq!(cluster.ok(&["rollout", "restart", "deploy/web"]), "deployment.apps/web restarted\n");
    let restarted = cluster.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.metadata.annotations}"]);
    assert!(restarted.contains("kubectl.kubernetes.io/restartedAt"), "{restarted}");

    cluster.ok(&["delete", "deploy", "web", "--wait"]);
    cluster.ok(&["wait", "--for=delete", "deploy/web", "--timeout=10s"]);
}

#[tokio::test]
async fn config_verbs_and_failures_are_clear() {
    let cluster = cluster().await;
    let kubeconfig = cluster.file(
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{}\"}}\ncontexts:\n- name: a\n  context: {{cluster: c, user: u}}\n- name: b\n  context: {{cluster: c, user: u, namespace: kube-system}}\ncurrent-context: a\nusers:\n- name: u\n  user: {{token: sekrit}}\n",
            cluster.apiserver.grpc_endpoint()
        ),
    );
    let kc = kubeconfig.to_str().expect("utf-8 path");
    let ctl = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ctl"))
            .env("KUBECONFIG", kc)
            .args(args)
            .output()
            .expect("ctl runs")
    };
    let view = ctl(&["config", "view"]);
    assert!(stdout(&view).contains("token: REDACTED") && !stdout(&view).contains("sekrit"), "{}", stdout(&view));
    assert_eq!(stdout(&ctl(&["config", "use-context", "b"])), "Switched to context \"b\".\n");
    assert_eq!(stdout(&ctl(&["config", "current-context"])), "b\n");
    let ns = ctl(&["get", "cm", "--no-headers", "-o", "custom-columns=NS:.metadata.namespace"]);
    assert!(ns.status.success(), "{}", stderr(&ns));
    assert_eq!(stdout(&ctl(&["config", "set-context", "--current", "--namespace=zzz"])), "Context \"b\" modified.\n");
    assert!(stdout(&ctl(&["config", "get-contexts"])).contains("*         b      c         u          zzz"));
    let version = ctl(&["version"]);
    assert!(stdout(&version).contains("Client Version: v") && stdout(&version).contains("Server Version: v"));

    let unreachable = std::process::Command::new(env!("CARGO_BIN_EXE_ctl"))
        .args(["--server=http://127.0.0.1:1", "get", "pods"])
        .output()
        .expect("ctl runs");
    assert!(!unreachable.status.success());
    assert!(stderr(&unreachable).contains("http://127.0.0.1:1"), "{}", stderr(&unreachable));

    for args in [vec!["logs", "somepod"], vec!["exec", "somepod", "--", "ls"]] {
        let output = cluster.ctl(&args);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&output).contains("NotFound") && stderr(&output).contains("somepod"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    assert!(cluster.ok(&["completion", "bash"]).contains("complete -F _ctl_complete ctl"));
    assert!(!cluster.ctl(&["completion", "fish"]).status.success());
}

const STREAMING_PODS: &str = "apiVersion: v1
kind: Pod
metadata:
  name: two
spec:
  nodeName: nowhere
  initContainers:
  - {name: setup, image: x}
  containers:
  - {name: a, image: x}
  - {name: b, image: x}
---
apiVersion: v1
kind: Pod
metadata:
  name: unscheduled
spec:
  containers:
  - {name: only, image: x}
---
apiVersion: v1
kind: Pod
metadata:
  name: onnode
spec:
  nodeName: nowhere
  containers:
  - {name: only, image: x}
";

#[tokio::test]
async fn logs_and_exec_say_what_is_wrong_before_any_kubelet_is_involved() {
    let cluster = cluster().await;
    let pods = cluster.file("pods.yaml", STREAMING_PODS);
    cluster.ok(&["apply", "-f", pods.to_str().expect("utf-8 path")]);
    let fails = |args: &[&str], wanted: &str| {
        let output = cluster.ctl(args);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr(&output).contains(wanted), "{args:?}: {}", stderr(&output));
    };
    fails(&["logs", "missing"], "pods \"missing\" not found");
    fails(&["exec", "missing", "--", "ls"], "NotFound");
    let choose =
        "a container name must be specified for pod two, choose one of: [a b] or one of the init containers: [setup]";
    fails(&["logs", "two"], choose);
    fails(&["exec", "two", "--", "ls"], choose);
    fails(&["logs", "two", "-c", "zz"], "container zz is not valid for pod two");
    fails(&["logs", "unscheduled"], "pod unscheduled does not have a host assigned");
    fails(&["logs", "onnode"], "container \"only\" in pod \"onnode\" is waiting to start: ContainerCreating");
    fails(&["exec", "onnode", "--", "ls"], "container \"only\" in pod \"onnode\" is not running");
    fails(&["exec", "onnode"], "you must specify at least one command");
    fails(&["logs", "--since", "5x", "onnode"], "invalid argument \"5x\" for \"--since\"");
    fails(&["logs", "deployment/none"], "NotFound");
}

#[tokio::test]
async fn get_watch_prints_changes() {
    let cluster = cluster().await;
    let mut watch = std::process::Command::new(env!("CARGO_BIN_EXE_ctl"))
        .arg(format!("--server={}", cluster.apiserver.grpc_endpoint()))
        .args(["get", "cm", "-w", "--no-headers"])
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ctl starts");
    let stdout_pipe = watch.stdout.take().expect("a stdout pipe");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout_pipe).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The watch may start after the create; keep creating until one shows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = None;
    let mut i = 0;
    while seen.is_none() && std::time::Instant::now() < deadline {
        cluster.ok(&["create", "cm", &format!("watched-{i}"), "--from-literal=a=b"]);
        i += 1;
        seen = lines_rx.recv_timeout(std::time::Duration::from_millis(500)).ok();
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let line = seen.expect("the watch printed a change");
    assert!(line.starts_with("watched-"), "{line}");
}

#[tokio::test]
async fn describe_shows_the_object_and_its_events() {
    let cluster = cluster().await;
    cluster.ok(&["create", "configmap", "described", "--from-literal=greeting=hello"]);
    let uid = cluster.ok(&["get", "cm", "described", "-o", "jsonpath={.metadata.uid}"]);
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
    let event = format!(
        "apiVersion: v1\nkind: Event\nmetadata: {{name: described.1, namespace: default}}\ninvolvedObject: {{kind: ConfigMap, name: described, namespace: default, uid: \"{uid}\"}}\nreason: Checked\nmessage: looked fine\ntype: Normal\nsource: {{component: the-test}}\nfirstTimestamp: \"{now}\"\nlastTimestamp: \"{now}\"\ncount: 1\n"
    );
    let path = cluster.file("event.yaml", &event);
    cluster.ok(&["create", "-f", path.to_str().expect("utf-8 path")]);
    let text = cluster.ok(&["describe", "cm", "described"]);
    assert!(text.starts_with("Name:               described\nNamespace:          default\n"), "{text}");
    assert!(text.contains("greeting:\n----\nhello"), "{text}");
    let events = &text[text.find("Events:").expect("an Events section")..];
    assert!(normalise(events).contains("Normal Checked <age> the-test looked fine"), "{text}");
    let events_table = normalise(&cluster.ok(&["get", "events"]));
    assert_eq!(
        events_table,
        "LAST SEEN TYPE REASON OBJECT MESSAGE\n<age> Normal Checked configmap/described looked fine"
    );
    let missing = cluster.ctl(&["describe", "cm", "nope"]);
    assert!(!missing.status.success());
    assert_eq!(
        stderr(&missing),
        "Error from server (NotFound): configmaps \"nope\" not found\nerror: 1 object(s) could not be described\n"
    );
}

/// Runs `check` until it returns true, for up to 30 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn rollout_history_and_undo_with_the_real_controller_manager() {
    let cluster = cluster().await;
    let http = format!("127.0.0.1:{}", testkit::free_port());
    let args: Vec<String> = [
        "--master",
        &cluster.apiserver.grpc_endpoint(),
        "--http-address",
        &http,
        "--leader-elect-lease-duration",
        "2s",
        "--leader-elect-renew-deadline",
        "1500ms",
        "--leader-elect-retry-period",
        "200ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let program = testkit::binary_path("controller-manager").expect("the controller-manager is built");
    let log = cluster.dir.path().join("controller-manager.log");
    let _manager = testkit::Daemon::spawn("controller-manager", &program, &args, &log).expect("it starts");

    cluster.ok(&["create", "deployment", "web", "--image=busybox:1"]);
    let revisions = |n: usize| {
        move |c: &Cluster| {
            let out = c.ctl(&["rollout", "history", "deploy/web"]);
            stdout(&out).lines().filter(|l| l.chars().next().is_some_and(|ch| ch.is_ascii_digit())).count() == n
        }
    };
    let one = revisions(1);
    eventually("revision 1", || one(&cluster)).await;
    cluster.ok(&["set", "image", "deploy/web", "busybox=busybox:2"]);
    let two = revisions(2);
    eventually("revision 2", || two(&cluster)).await;
    assert_eq!(
        normalise(&cluster.ok(&["rollout", "history", "deploy/web"])),
        "deployment.apps/web\nREVISION CHANGE-CAUSE\n1 <none>\n2 <none>\n"
    );
    let template = cluster.ok(&["rollout", "history", "deploy/web", "--revision=1"]);
    assert!(template.contains("image: busybox:1"), "{template}");

    assert_eq!(cluster.ok(&["rollout", "undo", "deploy/web"]), "deployment.apps/web rolled back\n");
    let image = || cluster.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert_eq!(image(), "busybox:1");
    let missing = cluster.ctl(&["rollout", "undo", "deploy/web", "--to-revision=9"]);
    assert!(stderr(&missing).contains("unable to find specified revision 9"), "{}", stderr(&missing));
}

#[tokio::test]
async fn apply_recurses_into_directories_only_with_r_and_reads_stdin() {
    let cluster = cluster().await;
    let dir = cluster.dir.path().join("manifests");
    std::fs::create_dir_all(dir.join("sub")).expect("make dirs");
    std::fs::write(dir.join("a.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: top}\n").expect("write");
    std::fs::write(dir.join("sub/b.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nested}\n")
        .expect("write");
    let dir = dir.to_str().expect("utf-8 path");
    assert_eq!(cluster.ok(&["apply", "-f", dir]), "configmap/top created\n");
    assert_eq!(cluster.ok(&["apply", "-R", "-f", dir]), "configmap/top unchanged\nconfigmap/nested created\n");

    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ctl"))
        .arg(format!("--server={}", cluster.apiserver.grpc_endpoint()))
        .args(["apply", "-f", "-"])
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ctl starts");
    child
        .stdin
        .take()
        .expect("a stdin pipe")
        .write_all(b"apiVersion: v1\nkind: Namespace\nmetadata: {name: piped}\n")
        .expect("write stdin");
    let output = child.wait_with_output().expect("ctl ends");
    assert!(output.status.success());
    assert_eq!(stdout(&output), "namespace/piped created\n");
}

const STATEFUL_AND_DAEMON_SETS: &str = "\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: db
        image: busybox:1
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: busybox:1
";

/// The controller-manager binary against the test's apiserver, stopped with the test.
fn controller_manager(cluster: &Cluster) -> testkit::Daemon {
    let http = format!("127.0.0.1:{}", testkit::free_port());
    let args: Vec<String> =
        ["--master", &cluster.apiserver.grpc_endpoint(), "--http-address", &http, "--leader-elect=false"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let program = testkit::binary_path("controller-manager").expect("the controller-manager is built");
    let log = cluster.dir.path().join("controller-manager.log");
    testkit::Daemon::spawn("controller-manager", &program, &args, &log).expect("it starts")
}

/// The revision numbers `rollout history` lists for `target`.
fn history_revisions(cluster: &Cluster, target: &str) -> Vec<String> {
    let out = cluster.ctl(&["rollout", "history", target]);
    stdout(&out)
        .lines()
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn rollout_history_and_undo_of_stateful_and_daemon_sets_use_controller_revisions() {
    let cluster = cluster().await;
    let _manager = controller_manager(&cluster);
    let manifest = cluster.file("sets.yaml", STATEFUL_AND_DAEMON_SETS);
    cluster.ok(&["apply", "-f", manifest.to_str().expect("utf-8 path")]);

    for (target, container, shown) in
        [("sts/db", "db", "statefulset.apps/db"), ("ds/agent", "agent", "daemonset.apps/agent")]
    {
        eventually(&format!("revision 1 of {target}"), || history_revisions(&cluster, target) == ["1"]).await;
        let only_one = cluster.ctl(&["rollout", "undo", target]);
        assert!(!only_one.status.success(), "undo with one revision succeeded");
        assert!(stderr(&only_one).contains("no last revision to roll back to"), "{}", stderr(&only_one));

        cluster.ok(&["set", "image", target, &format!("{container}=busybox:2")]);
        eventually(&format!("revision 2 of {target}"), || history_revisions(&cluster, target) == ["1", "2"]).await;
        assert_eq!(
            normalise(&cluster.ok(&["rollout", "history", target])),
            format!("{shown}\nREVISION CHANGE-CAUSE\n1 <none>\n2 <none>\n")
        );
        let first = cluster.ok(&["rollout", "history", target, "--revision=1"]);
        assert!(first.contains("image: busybox:1"), "{first}");

        let missing = cluster.ctl(&["rollout", "undo", target, "--to-revision=9"]);
        assert!(!missing.status.success(), "undo to a revision that does not exist succeeded");
        assert!(stderr(&missing).contains("unable to find specified revision 9 in history"), "{}", stderr(&missing));
        let same = cluster.ok(&["rollout", "undo", target, "--to-revision=2"]);
        assert_eq!(same, format!("{shown} skipped rollback (current template already matches revision 2)\n"));

        assert_eq!(cluster.ok(&["rollout", "undo", target]), format!("{shown} rolled back\n"));
        let image = cluster.ok(&["get", target, "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
        assert_eq!(image, "busybox:1");
        // The controller makes the old template's revision the newest again.
        eventually(&format!("revision 1 of {target} to become 3"), || {
            history_revisions(&cluster, target) == ["2", "3"]
        })
        .await;
        assert_eq!(cluster.ok(&["rollout", "undo", target, "--to-revision=2"]), format!("{shown} rolled back\n"));
        let image = cluster.ok(&["get", target, "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
        assert_eq!(image, "busybox:2");
    }

    cluster.ok(&["create", "job", "once", "--image=busybox"]);
    let job = cluster.ctl(&["rollout", "undo", "job/once"]);
    assert!(!job.status.success(), "undo of a Job succeeded");
    assert!(stderr(&job).contains("no rollout for a Job"), "{}", stderr(&job));
    let status = cluster.ctl(&["rollout", "status", "sts/db", "--revision=1"]);
    assert!(
        !status.status.success() && stderr(&status).contains("only supported for deployments"),
        "{}",
        stderr(&status)
    );
}

#[tokio::test]
async fn rollout_status_of_stateful_and_daemon_sets_follows_kubernetes_rules() {
    let cluster = cluster().await;
    let manifest = cluster.file("sets.yaml", STATEFUL_AND_DAEMON_SETS);
    cluster.ok(&["apply", "-f", manifest.to_str().expect("utf-8 path")]);
    // No controller-manager runs here: the test writes the status each stage has.
    let patch_status = |target: &str, status: &str| {
        let (kind, name) = target.split_once('/').expect("kind/name");
        cluster.ok(&["patch", kind, name, "--subresource=status", "-p", &format!("{{\"status\":{status}}}")]);
    };
    let once = |target: &str| cluster.ok(&["rollout", "status", target, "--watch=false"]);

    assert_eq!(once("sts/db"), "Waiting for statefulset spec update to be observed...\n");
    patch_status("sts/db", r#"{"observedGeneration":1,"replicas":2,"readyReplicas":1,"updatedReplicas":1}"#);
    assert_eq!(once("sts/db"), "Waiting for 1 pods to be ready...\n");
    patch_status(
        "sts/db",
        r#"{"observedGeneration":1,"replicas":2,"readyReplicas":2,"updatedReplicas":1,"currentReplicas":1,"currentRevision":"db-a","updateRevision":"db-b"}"#,
    );
    // The apiserver defaults rollingUpdate.partition to 0, as Kubernetes does, so
    // kubectl's partitioned wording applies.
    assert_eq!(
        once("sts/db"),
        "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...\n"
    );
    let timed_out = cluster.ctl(&["rollout", "status", "sts/db", "--timeout=1s"]);
    assert!(!timed_out.status.success() && stderr(&timed_out).contains("timed out"), "{}", stderr(&timed_out));
    patch_status(
        "sts/db",
        r#"{"observedGeneration":1,"replicas":2,"readyReplicas":2,"updatedReplicas":2,"currentReplicas":2,"currentRevision":"db-b","updateRevision":"db-b"}"#,
    );
    assert_eq!(
        cluster.ok(&["rollout", "status", "sts/db", "--timeout=30s"]),
        "partitioned roll out complete: 2 new pods have been updated...\n"
    );
    // A partition holds the older pods back: done once those above it are updated.
    cluster.ok(&["patch", "sts", "db", "-p", r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":1}}}}"#]);
    patch_status("sts/db", r#"{"observedGeneration":2,"replicas":2,"readyReplicas":2,"updatedReplicas":0}"#);
    assert_eq!(
        once("sts/db"),
        "Waiting for partitioned roll out to finish: 0 out of 1 new pods have been updated...\n"
    );
    patch_status("sts/db", r#"{"observedGeneration":2,"replicas":2,"readyReplicas":2,"updatedReplicas":1}"#);
    assert_eq!(once("sts/db"), "partitioned roll out complete: 1 new pods have been updated...\n");

    patch_status(
        "ds/agent",
        r#"{"observedGeneration":1,"desiredNumberScheduled":3,"updatedNumberScheduled":2,"numberAvailable":2}"#,
    );
    assert_eq!(
        once("ds/agent"),
        "Waiting for daemon set \"agent\" rollout to finish: 2 out of 3 new pods have been updated...\n"
    );
    patch_status(
        "ds/agent",
        r#"{"observedGeneration":1,"desiredNumberScheduled":3,"updatedNumberScheduled":3,"numberAvailable":1}"#,
    );
    assert_eq!(
        once("ds/agent"),
        "Waiting for daemon set \"agent\" rollout to finish: 1 of 3 updated pods are available...\n"
    );
    patch_status(
        "ds/agent",
        r#"{"observedGeneration":1,"desiredNumberScheduled":3,"updatedNumberScheduled":3,"numberAvailable":3}"#,
    );
    assert_eq!(
        cluster.ok(&["rollout", "status", "ds/agent", "--timeout=30s"]),
        "daemon set \"agent\" successfully rolled out\n"
    );
    let unsupported = cluster.ctl(&["rollout", "status", "configmap/x"]);
    assert!(
        !unsupported.status.success() && stderr(&unsupported).contains("no rollout for a ConfigMap"),
        "{}",
        stderr(&unsupported)
    );
}

#[tokio::test]
async fn a_closed_output_pipe_ends_ctl_quietly_as_sigpipe_does() {
    use std::os::unix::process::ExitStatusExt as _;
    let cluster = cluster().await;
    for i in 0..3 {
        cluster.ok(&["create", "cm", &format!("piped-{i}"), "--from-literal=a=b"]);
    }
    // The reader is gone before ctl writes a byte, as `ctl get cm | true` can be.
    let (read, write) = nix::unistd::pipe().expect("a pipe");
    drop(read);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ctl"))
        .arg(format!("--server={}", cluster.apiserver.grpc_endpoint()))
        .args(["get", "cm", "-o", "name"])
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::from(write))
        .output()
        .expect("ctl runs");
    assert_eq!(output.status.signal(), Some(nix::libc::SIGPIPE), "{:?}: {}", output.status, stderr(&output));
    assert_eq!(stderr(&output), "", "nothing to say about it");
}
