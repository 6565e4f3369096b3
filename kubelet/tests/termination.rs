//! How pods end on a real kubelet: the termination message a container leaves (in its
//! file, or its log's tail under FallbackToLogsOnError) and activeDeadlineSeconds.
//! Root only.

mod node;

use node::{Node, root};
use proto::core::v1::{ContainerStateTerminated, Pod};
use serde_json::json;

fn terminated(pod: &Pod, name: &str) -> ContainerStateTerminated {
    let status = pod.status.as_ref().expect("a status");
    let container = status.container_statuses.iter().find(|c| c.name == name).expect("the container's status");
    container.state.as_ref().and_then(|s| s.terminated.clone()).unwrap_or_default()
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or_default()
}

#[tokio::test]
async fn containers_leave_termination_messages_in_their_file_or_their_log() {
    if !root() {
        return;
    }
    let node = Node::start(1).await;
    let busybox = |name: &str, script: &str| json!({"name": name, "image": "rudder/busybox:test", "command": ["sh", "-c", script]});
    let mut fallback = busybox("fallback", "echo first; echo oops >&2; exit 1");
    fallback["terminationMessagePolicy"] = "FallbackToLogsOnError".into();
    let mut succeeded = busybox("succeeded", "echo all fine");
    succeeded["terminationMessagePolicy"] = "FallbackToLogsOnError".into();
    let mut custom = busybox("custom", "printf 'by user 1000' > /tmp/done");
    custom["terminationMessagePath"] = "/tmp/done".into();
    custom["securityContext"] = json!({"runAsUser": 1000});
    let mut preferred =
        busybox("preferred", "echo from the log; printf 'from the file' > /dev/termination-log; exit 2");
    preferred["terminationMessagePolicy"] = "FallbackToLogsOnError".into();
    node.create_pod(json!({
        "metadata": {"name": "messages"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                busybox("file", "printf bye > /dev/termination-log; exit 3"),
                fallback,
                succeeded,
                custom,
                preferred,
            ]
        }
    }))
    .await;
    let pod = node.wait_pod("messages", "phase Failed", |p| phase(p) == "Failed").await;

    let file = terminated(&pod, "file");
    assert_eq!((file.exit_code, file.reason.as_str(), file.message.as_str()), (3, "Error", "bye"));
    let fallback = terminated(&pod, "fallback");
    assert_eq!((fallback.exit_code, fallback.message.as_str()), (1, "first\noops\n"), "the log's tail stands in");
    let succeeded = terminated(&pod, "succeeded");
    assert_eq!((succeeded.reason.as_str(), succeeded.message.as_str()), ("Completed", ""), "no fallback on success");
    let custom = terminated(&pod, "custom");
    assert_eq!(
        (custom.exit_code, custom.message.as_str()),
        (0, "by user 1000"),
        "a path of the container's choosing, writable by a non-root user"
    );
    let preferred = terminated(&pod, "preferred");
    assert_eq!(preferred.message, "from the file", "the file wins over the log when it has something");

    node.pods().delete("messages", Default::default()).await.unwrap();
    node.wait_gone("messages").await;
}

#[tokio::test]
async fn a_pod_past_its_active_deadline_is_stopped_and_failed() {
    if !root() {
        return;
    }
    let node = Node::start(2).await;
    node.create_pod(json!({
        "metadata": {"name": "bounded"},
        "spec": {
            "activeDeadlineSeconds": 3,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "rudder/busybox:test", "command": ["sleep", "3600"]}]
        }
    }))
    .await;
    node.wait_pod("bounded", "phase Running", |p| phase(p) == "Running").await;
    let pod = node.wait_pod("bounded", "phase Failed", |p| phase(p) == "Failed").await;
    let status = pod.status.clone().unwrap();
    assert_eq!(status.reason, "DeadlineExceeded");
    assert_eq!(status.message, "Pod was active on the node longer than the specified deadline");
    let start = status.start_time.expect("a start time").seconds;
    let main = terminated(&pod, "main");
    assert!(main.finished_at.is_some(), "the container was stopped: {main:?}");
    let finished = main.finished_at.unwrap().seconds;
    assert!(finished - start >= 3, "stopped {}s after the start, before the deadline", finished - start);
    assert!(pod.metadata.as_ref().unwrap().deletion_timestamp.is_none(), "the pod is failed, not deleted");
    let uid = pod.metadata.as_ref().unwrap().uid.clone();
    assert!(!node.root.join("runtime").join(&uid).exists(), "the sandbox was released");

    // A failed pod stays failed: its container is not started again.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let later = node.pods().get("bounded").await.unwrap();
    assert_eq!(phase(&later), "Failed");
    assert_eq!(later.status.unwrap().container_statuses[0].restart_count, 0);

    node.pods().delete("bounded", Default::default()).await.unwrap();
    node.wait_gone("bounded").await;
}
