//! Issue 7 end to end: the "zhidan" sample application (manifests written for
//! Kubernetes, in manifests/zhidan/, unchanged) on a real single-node cluster:
//! every component its own process, images pulled through the kubelet's registry
//! mirror from a real registry, Services through kube-proxy's nftables rules, names
//! through kube-proxy's cluster DNS.
//!
//! Root only (network namespaces, cgroups, mounts, nftables); skipped otherwise.
//! Takes a few minutes: the manifests' probes wait 60 s before the first check.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use client::{Api, ListParams};
use e2e::{Cluster, Options, http};
use proto::apps::v1::Deployment;
use proto::core::v1::{Endpoints, Pod, Service};

const NAMESPACE: &str = "zhidan";
const SERVER_IP: &str = "192.168.192.73";
const WEB_IP: &str = "192.168.192.72";
const SERVER_PORT: u16 = 3000;
/// The corrected web Service's nodePort (the node is a namespace of this test, so
/// no other test's NodePorts meet it).
const WEB_NODE_PORT: u16 = 30810;
const DNS_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 20, 10);
/// The hostPath directories the Deployments mount (created by the kubelet).
const HOST_PATHS: [&str; 2] = ["/data/k8s/log/zhidan/zhidan.deploy.server", "/data/k8s/log/zhidan/zhidan.deploy.web"];
/// Long enough for the probes' 60 s initial delay on a busy machine; a stuck
/// rollout fails here instead of hanging.
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(300);
const DEADLINE: Duration = Duration::from_secs(90);

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/zhidan")
}

/// Removes the hostPath directories the kubelet made for the pods (only empty
/// directories, and only those this test's run created), also on failure.
struct HostPathGuard {
    created: Vec<PathBuf>,
}

impl HostPathGuard {
    fn new() -> HostPathGuard {
        // Every directory on the way that does not exist yet is ours to remove.
        let mut created = Vec::new();
        for path in HOST_PATHS {
            let mut dir = Some(Path::new(path));
            while let Some(d) = dir {
                if d.exists() || d == Path::new("/") {
                    break;
                }
                if !created.contains(&d.to_path_buf()) {
                    created.push(d.to_path_buf());
                }
                dir = d.parent();
            }
        }
        // Deepest first.
        created.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        HostPathGuard { created }
    }
}

impl Drop for HostPathGuard {
    fn drop(&mut self) {
        for dir in &self.created {
            // remove_dir only removes empty directories: nothing else is ever lost.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn output_text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ctl_ok(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster.ctl(args).expect("running ctl");
    assert!(out.status.success(), "ctl {}: {}", args.join(" "), output_text(&out));
    output_text(&out)
}

/// The pod name in a serve-hostname page ("<h1>Hello from NAME</h1>").
fn pod_in_page(body: &str) -> Option<String> {
    let start = body.find("Hello from ")? + "Hello from ".len();
    let rest = &body[start..];
    Some(rest[..rest.find('<')?].to_string())
}

async fn pods_of(cluster: &Cluster, app: &str) -> Vec<Pod> {
    let pods = Api::<Pod>::namespaced(&cluster.client, NAMESPACE)
        .list(&ListParams::labels(&format!("module=zhidan,app={app}")))
        .await
        .expect("listing pods");
    pods.items.into_iter().filter(|p| p.metadata.as_ref().is_some_and(|m| m.deletion_timestamp.is_none())).collect()
}

fn name_of(pod: &Pod) -> String {
    pod.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default()
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.as_ref().map(|m| m.uid.clone()).unwrap_or_default()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.r#type == "Ready" && c.status == "True"))
}

fn restarts(pod: &Pod) -> i32 {
    pod.status.as_ref().and_then(|s| s.container_statuses.first()).map_or(0, |c| c.restart_count)
}

fn ready_replicas(deployment: &Deployment) -> i32 {
    deployment.status.as_ref().map_or(0, |s| s.ready_replicas)
}

/// `count` GETs from inside the node to a ClusterIP; the pods that answered (a
/// failed request is an error).
async fn ask_cluster_ip(cluster: &Cluster, address: SocketAddr, count: usize) -> Result<Vec<String>, String> {
    cluster
        .node()
        .run(move || {
            (0..count)
                .map(|i| match http::get(address, "/") {
                    Ok((200, body)) => pod_in_page(&body).ok_or_else(|| format!("request {i}: no pod in {body:?}")),
                    Ok((status, body)) => Err(format!("request {i} to {address}: status {status}: {body}")),
                    Err(e) => Err(format!("request {i} to {address}: {e}")),
                })
                .collect()
        })
        .await
}

/// Answers from a Service while one of its pods is being replaced: up to 10 tries,
/// for the moment before the dead endpoint leaves the rules.
async fn service_answers(cluster: &Cluster, address: SocketAddr) -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..10 {
        match ask_cluster_ip(cluster, address, 1).await {
            Ok(mut pods) => return Ok(pods.remove(0)),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

async fn wait_rollout(cluster: &mut Cluster, started: Instant) {
    let deployments = Api::<Deployment>::namespaced(&cluster.client, NAMESPACE);
    loop {
        let server = deployments.get_opt("zhidan-deploy-server").await.expect("getting a Deployment");
        let web = deployments.get_opt("zhidan-deploy-web").await.expect("getting a Deployment");
        let ready = [&server, &web].map(|d| d.as_ref().map_or(0, ready_replicas));
        if ready == [2, 2] {
            eprintln!("both Deployments 2/2 ready {:.0?} after apply", started.elapsed());
            return;
        }
        if let Err(e) = cluster.check_running() {
            panic!("{e}");
        }
        if started.elapsed() > ROLLOUT_DEADLINE {
            let pods = cluster.ctl(&["get", "pods", "-n", NAMESPACE, "-o", "wide"]).map(|o| output_text(&o));
            panic!(
                "the Deployments are {ready:?} ready after {ROLLOUT_DEADLINE:?}\npods: {pods:?}\nkubelet:\n{}\nscheduler:\n{}",
                cluster.log_tail("kubelet"),
                cluster.log_tail("scheduler")
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zhidan_sample_application_runs_end_to_end() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "SKIPPED zhidan_sample_application_runs_end_to_end: it needs root (network namespaces, cgroups, mounts, nftables); run `sudo cargo nextest run -p e2e`"
        );
        return;
    }
    let pid = std::process::id();
    let work = tempfile::Builder::new().prefix("rudder-e2e-zhidan-").tempdir().expect("a temp dir");

    // The images, built from busybox-static and pushed into a real registry.
    let images = work.path().join("images");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images/build-test-images.sh");
    let out = Command::new("bash").arg(&script).arg(&images).output().expect("running build-test-images.sh");
    assert!(out.status.success(), "build-test-images.sh: {}", output_text(&out));
    let registry = testkit::registry::Registry::start().await.expect("starting docker-registry");
    for name in ["zhidan-server", "zhidan-web"] {
        registry
            .push(
                &images.join(format!("{name}.oci.tar")),
                &format!("mydocker.io:5000/{name}:0.1"),
                &format!("{name}:0.1"),
            )
            .expect("pushing an image");
    }
    let registry_address: SocketAddr = registry.address().parse().expect("the registry's address");

    let _host_paths = HostPathGuard::new();
    let mut cluster = Cluster::start(Options {
        tag: format!("zh{}", pid % 100_000),
        link_octet: u8::try_from(pid % 250).unwrap_or(0) + 1,
        service_cidr: "192.168.192.0/24".into(),
        cluster_cidr: "10.244.0.0/16".into(),
        dns_ip: DNS_IP,
        registry_mirrors: vec![("mydocker.io:5000".into(), registry_address)],
    })
    .await
    .unwrap_or_else(|e| panic!("starting the cluster: {e}"));

    // The manifests as written, with the real ctl.
    let dir = manifests();
    let applied = Instant::now();
    for file in
        ["zhidan.namespace.yaml", "zhidan.deploy.server.yaml", "zhidan.deploy.web.yaml", "zhidan.svc.server.yaml"]
    {
        let path = dir.join(file);
        ctl_ok(&cluster, &["apply", "-f", &path.display().to_string()]);
    }
    // The web Service has a typo Kubernetes rejects too: "nodeport".
    let web_service = dir.join("zhidan.svc.web.yaml");
    let out = cluster.ctl(&["apply", "-f", &web_service.display().to_string()]).expect("running ctl");
    let message = output_text(&out);
    assert!(!out.status.success(), "applying the web Service as written must fail: {message}");
    assert!(message.contains("spec.ports[0].nodeport"), "the error names the field: {message}");
    assert!(message.contains("nodePort"), "the error suggests nodePort: {message}");
    assert!(
        Api::<Service>::namespaced(&cluster.client, NAMESPACE).get_opt("zhidan-web").await.expect("get").is_none(),
        "nothing was created from the rejected manifest"
    );
    // The corrected copy: type NodePort with a nodePort in the default range.
    let text = std::fs::read_to_string(&web_service).expect("reading the web Service");
    assert!(text.contains("    nodeport: 8010\n"), "the manifest changed: {text}");
    let corrected = text.replace("    nodeport: 8010\n", &format!("    nodePort: {WEB_NODE_PORT}\n")).replacen(
        "spec:\n",
        "spec:\n  type: NodePort\n",
        1,
    );
    let corrected_path = work.path().join("zhidan.svc.web.corrected.yaml");
    std::fs::write(&corrected_path, corrected).expect("writing the corrected copy");
    ctl_ok(&cluster, &["apply", "-f", &corrected_path.display().to_string()]);

    // Both Deployments reach 2/2 once the probes' initial delay has passed.
    wait_rollout(&mut cluster, applied).await;
    let servers = pods_of(&cluster, "server").await;
    let webs = pods_of(&cluster, "web").await;
    assert_eq!(servers.len(), 2, "two server pods");
    assert_eq!(webs.len(), 2, "two web pods");
    let server_names: BTreeSet<String> = servers.iter().map(name_of).collect();

    // From inside a web pod: the server's name resolves through the cluster DNS
    // (the pod's search path completes "zhidan-server.zhidan") and answers.
    let web_pod = &webs[0];
    let container = "zhidan-web-container";
    let out = cluster.exec(&uid_of(web_pod), container, restarts(web_pod), &["cat", "/etc/resolv.conf"]).expect("exec");
    let resolv = output_text(&out);
    assert!(resolv.contains(&format!("nameserver {DNS_IP}")), "the pod's resolv.conf: {resolv}");
    // busybox's nslookup sends a dotted name as it is (no search path), so the test walks the pod's search path as a
    // resolver does, asking the cluster DNS from inside the pod, then fetches the
    // page from the address found.
    let searches: Vec<String> = resolv
        .lines()
        .find_map(|line| line.trim().strip_prefix("search "))
        .map(|list| list.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    assert!(searches.iter().any(|s| s == "zhidan.svc.cluster.local"), "the pod's search path: {resolv}");
    let mut lookups = Vec::new();
    let mut resolved = None;
    for domain in &searches {
        let name = format!("zhidan-server.zhidan.{domain}");
        let out = cluster.exec(&uid_of(web_pod), container, restarts(web_pod), &["nslookup", &name]).expect("exec");
        let text = output_text(&out);
        if out.status.success() && text.contains(SERVER_IP) {
            resolved = Some(name);
            break;
        }
        lookups.push(format!("{name}: {text}"));
    }
    let resolved = resolved.unwrap_or_else(|| {
        panic!("zhidan-server.zhidan did not resolve in {} through {searches:?}: {lookups:?}", name_of(web_pod))
    });
    eprintln!("zhidan-server.zhidan resolved in {} as {resolved} -> {SERVER_IP}", name_of(web_pod));
    // Over 50 requests to the ClusterIP, both replicas answer.
    let server_address = SocketAddr::from((SERVER_IP.parse::<Ipv4Addr>().expect("an IP"), SERVER_PORT));
    // kube-proxy may sync the Endpoints a moment after the Deployments count ready.
    let start = Instant::now();
    while ask_cluster_ip(&cluster, server_address, 1).await.is_err() && start.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answers = match ask_cluster_ip(&cluster, server_address, 60).await {
        Ok(answers) => answers,
        Err(e) => {
            let mut direct = Vec::new();
            for pod in &servers {
                let ip: Ipv4Addr =
                    pod.status.as_ref().and_then(|s| s.pod_ip.parse().ok()).unwrap_or(Ipv4Addr::UNSPECIFIED);
                for port in [80, SERVER_PORT] {
                    let address = SocketAddr::from((ip, port));
                    let outcome = cluster.node().run(move || http::get(address, "/")).await;
                    direct.push(format!("{address}: {outcome:?}"));
                }
            }
            let endpoints = cluster.ctl(&["get", "endpoints", "-n", NAMESPACE, "-o", "yaml"]).map(|o| output_text(&o));
            panic!(
                "{e}\nthe server pods directly: {direct:?}\nendpoints: {endpoints:?}\nrules:\n{}\nkube-proxy:\n{}",
                cluster.proxy_rules().unwrap_or_default(),
                cluster.log_tail("kube-proxy")
            );
        }
    };
    let answered: BTreeSet<String> = answers.iter().cloned().collect();
    assert_eq!(answered, server_names, "60 requests to {server_address} reach both server pods");

    // The NodePort answers from the host, on the node's InternalIP.
    let node_ip = cluster.node().node_ip;
    let node_port = SocketAddr::from((node_ip, WEB_NODE_PORT));
    let web_names: BTreeSet<String> = webs.iter().map(name_of).collect();
    let (status, body) =
        tokio::task::spawn_blocking(move || http::get(node_port, "/")).await.expect("a blocking task").unwrap_or_else(
            |e| panic!("GET {node_port} from the host: {e}\nkube-proxy:\n{}", cluster.log_tail("kube-proxy")),
        );
    assert_eq!(status, 200, "{body}");
    assert!(pod_in_page(&body).is_some_and(|p| web_names.contains(&p)), "the NodePort answers from a web pod: {body}");
    // The web ClusterIP too.
    let web_address = SocketAddr::from((WEB_IP.parse::<Ipv4Addr>().expect("an IP"), 8010));
    let answers = ask_cluster_ip(&cluster, web_address, 10).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(answers.iter().all(|p| web_names.contains(p)), "{answers:?}");

    let url = format!("http://{SERVER_IP}:{SERVER_PORT}/");
    // busybox's wget crashes in this static build; nc speaks the HTTP/1.0 request.
    let fetch = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {SERVER_IP} {SERVER_PORT}");
    let out = cluster.exec(&uid_of(web_pod), container, restarts(web_pod), &["sh", "-c", &fetch]).expect("exec");
    let page = output_text(&out);
    let answered = pod_in_page(&page);
    if !(out.status.success() && answered.as_ref().is_some_and(|p| server_names.contains(p))) {
        let uid = uid_of(web_pod);
        let diagnose = |command: &[&str]| {
            cluster.exec(&uid, container, restarts(web_pod), command).map(|o| output_text(&o)).unwrap_or_default()
        };
        panic!(
            "wget {url} in {}: {page}\nagain, verbose: {}\nits routes: {}\nits addresses: {}\nkube-proxy's rules:\n{}",
            name_of(web_pod),
            diagnose(&["sh", "-c", &fetch]),
            diagnose(&["ip", "route"]),
            diagnose(&["ip", "addr"]),
            cluster.proxy_rules().unwrap_or_default()
        );
    }

    // Killing a server pod's process: the kubelet replaces it, and the Service
    // answers all the while (from the other replica until the new one is ready).
    let victim = &servers[0];
    let victim_name = name_of(victim);
    let victim_pid =
        cluster.container_pid(&uid_of(victim), "zhidan-server-container", restarts(victim)).expect("its pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim_pid), nix::sys::signal::Signal::SIGKILL)
        .expect("killing the server's process");
    let killed = Instant::now();
    let pods = Api::<Pod>::namespaced(&cluster.client, NAMESPACE);
    let mut answered_while_replacing = BTreeSet::new();
    let mut saw_not_ready = false;
    loop {
        match service_answers(&cluster, server_address).await {
            Ok(pod) => {
                answered_while_replacing.insert(pod);
            }
            Err(e) => panic!("the server Service stopped answering while {victim_name} was replaced: {e}"),
        }
        let pod = pods.get_opt(&victim_name).await.expect("getting the pod");
        let pod = pod.unwrap_or_else(|| panic!("{victim_name} vanished"));
        saw_not_ready |= !is_ready(&pod);
        if restarts(&pod) >= 1 && is_ready(&pod) {
            eprintln!("{victim_name} restarted and ready again {:.0?} after the kill", killed.elapsed());
            break;
        }
        if killed.elapsed() > ROLLOUT_DEADLINE {
            panic!("{victim_name} was not replaced in time; kubelet:\n{}", cluster.log_tail("kubelet"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(saw_not_ready, "the killed pod was reported not ready while its process was replaced");
    assert!(!answered_while_replacing.is_empty());
    let new_pid =
        cluster.container_pid(&uid_of(victim), "zhidan-server-container", restarts(victim) + 1).expect("the new pid");
    assert_ne!(new_pid, victim_pid, "a new process runs");
    let answers = ask_cluster_ip(&cluster, server_address, 60).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answers.iter().cloned().collect::<BTreeSet<_>>(), server_names, "both replicas answer again");

    // Deleting the namespace removes everything, the Services' rules included.
    let rules = cluster.proxy_rules().expect("listing the rules");
    assert!(rules.contains(SERVER_IP) && rules.contains(WEB_IP), "the rules have the Services before: {rules}");
    ctl_ok(&cluster, &["delete", "namespace", NAMESPACE, "--wait=true"]);
    let start = Instant::now();
    let runtime_dir = cluster.kubelet_root.join("runtime");
    loop {
        let pods_left = Api::<Pod>::namespaced(&cluster.client, NAMESPACE)
            .list(&ListParams::default())
            .await
            .map(|l| l.items.len());
        let services_left = Api::<Service>::namespaced(&cluster.client, NAMESPACE)
            .list(&ListParams::default())
            .await
            .map(|l| l.items.len());
        let endpoints_left = Api::<Endpoints>::namespaced(&cluster.client, NAMESPACE)
            .list(&ListParams::default())
            .await
            .map(|l| l.items.len());
        // Names starting with a dot are the runtime's shared mount point and init layer, not pods.
        let sandboxes_left = std::fs::read_dir(&runtime_dir)
            .map(|dir| dir.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count())
            .unwrap_or(0);
        let rules = cluster.proxy_rules().expect("listing the rules");
        let rules_left =
            rules.contains(SERVER_IP) || rules.contains(WEB_IP) || rules.contains(&WEB_NODE_PORT.to_string());
        if pods_left.as_ref().is_ok_and(|n| *n == 0)
            && services_left.as_ref().is_ok_and(|n| *n == 0)
            && endpoints_left.as_ref().is_ok_and(|n| *n == 0)
            && sandboxes_left == 0
            && !rules_left
        {
            break;
        }
        if start.elapsed() > DEADLINE {
            panic!(
                "after deleting the namespace: pods {pods_left:?}, services {services_left:?}, endpoints {endpoints_left:?}, sandboxes {sandboxes_left}, rules:\n{rules}\nkubelet:\n{}",
                cluster.log_tail("kubelet")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = cluster.ctl(&["get", "namespace", NAMESPACE]).expect("running ctl");
    assert!(!out.status.success(), "the namespace is gone: {}", output_text(&out));
    drop(cluster);
    drop(registry);
}
