//! ctl against a real apiserver and etcd: apply, get, delete, and bad input.

use std::path::PathBuf;
use std::process::Output;

struct Cluster {
    _etcd: testkit::Etcd,
    apiserver: testkit::ApiServer,
    dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let etcd = testkit::Etcd::start().await.expect("etcd starts");
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.expect("the apiserver starts");
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
async fn a_bad_manifest_fails_with_its_path_and_writes_nothing() {
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

    let get = cluster.ctl(&["get", "configmap", "fine"]);
    assert!(!get.status.success(), "the valid document of a bad file was applied anyway");
    assert!(stderr(&get).contains("NotFound"), "{}", stderr(&get));
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
