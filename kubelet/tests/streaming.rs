//! Logs and exec end to end: a real kubelet with the busybox test image, reached
//! through the real apiserver's Streaming service (which proxies to the kubelet's
//! endpoint from the Node's status). Root only.

mod node;

use std::time::{Duration, Instant};

use node::{Node, root};
use proto::core::v1::Pod;
use proto::streaming::v1::streaming_client::StreamingClient;
use proto::streaming::v1::{ExecInput, ExecStart, LogsRequest, TerminalSize, exec_input, exec_output};
use serde_json::json;
use tonic::transport::Channel;

async fn streaming(node: &Node) -> StreamingClient<Channel> {
    StreamingClient::connect(node.apiserver.grpc_endpoint()).await.unwrap()
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or_default()
}

fn running(pod: &Pod) -> bool {
    phase(pod) == "Running"
        && pod.status.as_ref().is_some_and(|s| {
            !s.container_statuses.is_empty()
                && s.container_statuses.iter().all(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
        })
}

async fn logs(client: &mut StreamingClient<Channel>, request: LogsRequest) -> Result<String, tonic::Status> {
    let mut stream = client.logs(request).await?.into_inner();
    let mut text = Vec::new();
    while let Some(chunk) = stream.message().await? {
        text.extend_from_slice(&chunk.data);
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

fn request(pod: &str) -> LogsRequest {
    LogsRequest { namespace: "default".into(), pod: pod.into(), ..Default::default() }
}

/// Polls until the pod's log satisfies `ok` (the kubelet writes asynchronously).
async fn wait_logs(client: &mut StreamingClient<Channel>, r: LogsRequest, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = logs(client, r.clone()).await;
        if let Ok(text) = &text
            && ok(text)
        {
            return text.clone();
        }
        assert!(Instant::now() < deadline, "the log never got there: {text:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn logs_are_kept_per_instance_rotated_without_loss_followed_and_filtered() {
    if !root() {
        return;
    }
    let mut node = Node::start(1).await;
    // Tiny files so that 200 lines rotate many times; enough of them to keep every line.
    node.stop_kubelet();
    node.args.extend([
        "--container-log-max-size".into(),
        "512".into(),
        "--container-log-max-files".into(),
        "100".into(),
    ]);
    node.start_kubelet();
    node.create_pod(json!({
        "metadata": {"name": "counter"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "rudder/busybox:test", "command": ["sh", "-c",
                "i=1; while [ $i -le 200 ]; do echo \"line $i\"; i=$((i+1)); done; echo oops >&2"]}]
        }
    }))
    .await;
    let pod = node.wait_pod("counter", "Succeeded", |p| phase(p) == "Succeeded").await;
    let mut client = streaming(&node).await;
    let text = logs(&mut client, request("counter")).await.unwrap();
    let mut expected: String = (1..=200).map(|i| format!("line {i}\n")).collect();
    expected.push_str("oops\n");
    assert_eq!(text, expected, "lines lost or reordered across rotations");
    let uid = &pod.metadata.as_ref().unwrap().uid;
    let dir = node.root.join("logs").join(format!("default_counter_{uid}")).join("c");
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert!(files > 5, "the log was not rotated: {files} files in {}", dir.display());
    let raw = std::fs::read_to_string(dir.join("0.log")).unwrap();
    let first = raw.lines().next().unwrap_or_default();
    let fields: Vec<&str> = first.splitn(4, ' ').collect();
    assert!(chrono::DateTime::parse_from_rfc3339(fields[0]).is_ok() && fields[2] == "F", "not CRI format: {first}");

    let tail = logs(&mut client, LogsRequest { tail_lines: Some(2), ..request("counter") }).await.unwrap();
    assert_eq!(tail, "line 200\noops\n");
    let stamped =
        logs(&mut client, LogsRequest { tail_lines: Some(1), timestamps: true, ..request("counter") }).await.unwrap();
    let (stamp, rest) = stamped.split_once(' ').unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{stamped}");
    assert_eq!(rest, "oops\n");
    let limited = logs(&mut client, LogsRequest { limit_bytes: Some(9), ..request("counter") }).await.unwrap();
    assert_eq!(limited, "line 1\nli");
    let error = logs(&mut client, LogsRequest { previous: true, ..request("counter") }).await.unwrap_err();
    assert!(error.message().contains("previous terminated container \"c\""), "{error:?}");

    // A restarting container: the previous instance's log stays readable.
    node.create_pod(json!({
        "metadata": {"name": "restarts"},
        "spec": {
            "containers": [{"name": "r", "image": "rudder/busybox:test", "command": ["sh", "-c",
                "n=$(cat /d/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /d/n; echo \"attempt $n\"; [ $n -ge 2 ] && exec sleep 3600; exit 1"],
                "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
            "volumes": [{"name": "d", "emptyDir": {}}]
        }
    }))
    .await;
    node.wait_pod("restarts", "a restart", |p| {
        running(p) && p.status.as_ref().is_some_and(|s| s.container_statuses.iter().any(|c| c.restart_count >= 1))
    })
    .await;
    let current = wait_logs(&mut client, request("restarts"), |t| t.contains("attempt 2")).await;
    assert_eq!(current, "attempt 2\n");
    let previous = logs(&mut client, LogsRequest { previous: true, ..request("restarts") }).await.unwrap();
    assert_eq!(previous, "attempt 1\n");

    // Follow sees lines written after it started, and since filters out old ones.
    node.create_pod(json!({
        "metadata": {"name": "ticker"},
        "spec": {"containers": [{"name": "t", "image": "rudder/busybox:test", "command": ["sh", "-c",
            "i=0; while true; do echo \"tick $i\"; i=$((i+1)); sleep 0.2; done"]}]}
    }))
    .await;
    node.wait_pod("ticker", "Running", running).await;
    wait_logs(&mut client, request("ticker"), |t| t.contains("tick 1\n")).await;
    let mut stream =
        client.logs(LogsRequest { follow: true, tail_lines: Some(1), ..request("ticker") }).await.unwrap().into_inner();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let first_tick = |text: &str| text.lines().next().and_then(|l| l.strip_prefix("tick ")?.parse::<u64>().ok());
    while seen.lines().count() < 6 {
        assert!(Instant::now() < deadline, "follow stopped delivering: {seen:?}");
        let chunk = tokio::time::timeout(Duration::from_secs(30), stream.message()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk.data));
    }
    let start = first_tick(&seen).unwrap();
    let expected: String = (start..start + 6).map(|i| format!("tick {i}\n")).collect();
    assert!(seen.starts_with(&expected), "follow skipped or repeated lines: {seen:?}");
    drop(stream);
    let recent = logs(&mut client, LogsRequest { since_seconds: Some(1), ..request("ticker") }).await.unwrap();
    assert!(!recent.contains("tick 0\n"), "since kept an old line: {recent:?}");
}

fn start(pod: &str, container: &str, command: &[&str], stdin: bool, tty: bool) -> ExecInput {
    ExecInput {
        input: Some(exec_input::Input::Start(ExecStart {
            namespace: "default".into(),
            pod: pod.into(),
            container: container.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            stdin,
            tty,
            size: tty.then_some(TerminalSize { width: 100, height: 40 }),
            pod_uid: String::new(),
        })),
    }
}

/// Runs an exec with `inputs` after the start; returns stdout, stderr and the exit code.
async fn exec(
    client: &mut StreamingClient<Channel>,
    start: ExecInput,
    inputs: Vec<ExecInput>,
) -> (String, String, i32) {
    let outbound = futures::stream::iter(std::iter::once(start).chain(inputs));
    // Keep our side open until the command is done, as a terminal user would.
    let outbound = futures::StreamExt::chain(outbound, futures::stream::pending());
    let mut stream = client.exec(outbound).await.unwrap().into_inner();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), stream.message()).await.unwrap().unwrap();
        match message.and_then(|m| m.output) {
            Some(exec_output::Output::Stdout(d)) => out.extend_from_slice(&d),
            Some(exec_output::Output::Stderr(d)) => err.extend_from_slice(&d),
            Some(exec_output::Output::ExitCode(code)) => {
                return (String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned(), code);
            }
            None => panic!("the exec ended without an exit code; stdout {out:?}"),
        }
    }
}

#[tokio::test]
async fn exec_runs_in_the_container_with_stdin_a_terminal_and_the_exit_code() {
    if !root() {
        return;
    }
    let node = Node::start(2).await;
    node.create_pod(json!({
        "metadata": {"name": "box"},
        "spec": {"containers": [
            {"name": "main", "image": "rudder/busybox:test", "command": ["sh", "-c", "echo inside > /tmp/marker; exec sleep 3600"],
             "env": [{"name": "FROM_SPEC", "value": "yes"}], "workingDir": "/tmp"},
            {"name": "side", "image": "rudder/busybox:test", "command": ["sleep", "3600"]}
        ]}
    }))
    .await;
    node.wait_pod("box", "Running", running).await;
    let mut client = streaming(&node).await;

    let (out, err, code) =
        exec(&mut client, start("box", "main", &["sh", "-c", "echo hi; exit 3"], false, false), vec![]).await;
    assert_eq!((out.as_str(), code), ("hi\n", 3), "stderr: {err}");
    let (out, err, code) = exec(
        &mut client,
        start("box", "main", &["sh", "-c", "cat /tmp/marker; pwd; echo $FROM_SPEC; echo e >&2"], false, false),
        vec![],
    )
    .await;
    assert_eq!((out.as_str(), err.as_str(), code), ("inside\n/tmp\nyes\n", "e\n", 0));

    let feed = vec![
        ExecInput { input: Some(exec_input::Input::Stdin(b"hello\nworld\n".to_vec().into())) },
        ExecInput { input: Some(exec_input::Input::StdinClosed(true)) },
    ];
    let (out, _, code) =
        exec(&mut client, start("box", "main", &["sh", "-c", "cat; echo done"], true, false), feed).await;
    assert_eq!((out.as_str(), code), ("hello\nworld\ndone\n", 0));

    // A terminal of the size asked for, then resized; and its exit code.
    let feed = vec![ExecInput { input: Some(exec_input::Input::Stdin(b"stty size; exit 7\n".to_vec().into())) }];
    let (out, _, code) = exec(&mut client, start("box", "main", &["sh"], true, true), feed).await;
    assert!(out.contains("40 100"), "terminal size not applied: {out:?}");
    assert_eq!(code, 7);
    let feed = vec![
        ExecInput { input: Some(exec_input::Input::Resize(TerminalSize { width: 132, height: 50 })) },
        ExecInput { input: Some(exec_input::Input::Stdin(b"sleep 1; stty size; exit\n".to_vec().into())) },
    ];
    let (out, _, _) = exec(&mut client, start("box", "main", &["sh"], true, true), feed).await;
    assert!(out.contains("50 132"), "resize not applied: {out:?}");

    // Errors a person can act on.
    let outbound = futures::stream::iter([start("box", "", &["true"], false, false)]);
    let error = client.exec(outbound).await.unwrap_err();
    assert!(error.message().contains("choose one of: [main side]"), "{error:?}");
    let outbound = futures::stream::iter([start("nope", "", &["true"], false, false)]);
    let error = client.exec(outbound).await.unwrap_err();
    assert_eq!(proto::ApiError::from_grpc(&error).reason(), proto::Reason::NotFound, "{error:?}");
    let (_, err, code) = exec(&mut client, start("box", "side", &["no-such-command"], false, false), vec![]).await;
    assert!(code != 0 && err.contains("no-such-command"), "{code} {err}");
}
