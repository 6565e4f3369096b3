//! A crash-looping container's restart back-off and restart count survive a kubelet
//! restart: the restarted kubelet neither resets the count nor restarts the container
//! before the back-off it had recorded has passed, and the back-off keeps doubling.
//! Root only (real containers, cgroups, a bridge).

mod node;

use node::{Node, root};
use proto::core::v1::{ContainerStatus, Pod};
use serde_json::json;

fn main_status(pod: &Pod) -> ContainerStatus {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.iter().find(|c| c.name == "main").cloned())
        .unwrap_or_default()
}

fn waiting(c: &ContainerStatus) -> Option<(String, String)> {
    let w = c.state.as_ref()?.waiting.as_ref()?;
    Some((w.reason.clone(), w.message.clone()))
}

/// The back-off a CrashLoopBackOff message names ("back-off 20s restarting failed ...").
fn backoff_secs(message: &str) -> Option<i64> {
    message.strip_prefix("back-off ")?.split_once("s ")?.0.parse().ok()
}

/// The back-off Kubernetes serves before restart number `restarts + 1`: the first restart is
/// immediate, then 10 s doubling to 5 min.
fn expected_backoff(restarts: i32) -> i64 {
    (10i64 << (restarts - 1).clamp(0, 5)).min(300)
}

/// The attempt number in a container ID ("rudder://<uid>_<name>_<attempt>").
fn attempt_of(container_id: &str) -> Option<i32> {
    container_id.rsplit('_').next()?.parse().ok()
}

/// Start time (unix seconds) of attempt `attempt` as the status shows it: running now,
/// just terminated, or as the last state while waiting to restart.
fn started_at(c: &ContainerStatus, attempt: i32) -> Option<i64> {
    let state = c.state.as_ref()?;
    if let Some(running) = &state.running
        && attempt_of(&c.container_id) == Some(attempt)
    {
        return running.started_at.map(|t| t.seconds);
    }
    let terminated = [state.terminated.as_ref(), c.last_state.as_ref().and_then(|s| s.terminated.as_ref())];
    terminated
        .into_iter()
        .flatten()
        .find(|t| attempt_of(&t.container_id) == Some(attempt))
        .and_then(|t| t.started_at.map(|s| s.seconds))
}

fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[tokio::test]
async fn a_restarted_kubelet_keeps_the_restart_count_and_honours_the_recorded_back_off() {
    if !root() {
        return;
    }
    let mut node = Node::start(30).await;
    node.create_pod(json!({
        "metadata": {"name": "crasher"},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": "rudder/busybox:test",
                                 "command": ["sh", "-c", "sleep 1; exit 1"]}]}
    }))
    .await;

    // In CrashLoopBackOff after at least two restarts, with enough of the back-off left
    // to restart the kubelet inside it (else wait for the next, longer one).
    let mut min_restarts = 2;
    let (restarts, finished, backoff) = loop {
        let pod = node
            .wait_pod("crasher", &format!("CrashLoopBackOff with restartCount >= {min_restarts}"), |p| {
                let c = main_status(p);
                c.restart_count >= min_restarts && waiting(&c).is_some_and(|(reason, _)| reason == "CrashLoopBackOff")
            })
            .await;
        let c = main_status(&pod);
        let (_, message) = waiting(&c).unwrap_or_default();
        let backoff = backoff_secs(&message).unwrap_or_else(|| panic!("no back-off in the message {message:?}"));
        assert_eq!(
            backoff,
            expected_backoff(c.restart_count),
            "back-off after {} restarts: {message}",
            c.restart_count
        );
        let last =
            c.last_state.as_ref().and_then(|s| s.terminated.clone()).expect("lastState.terminated while waiting");
        assert_eq!(attempt_of(&last.container_id), Some(c.restart_count), "lastState is the latest attempt");
        let finished = last.finished_at.expect("lastState.terminated.finishedAt").seconds;
        if finished + backoff - now_unix() >= 10 {
            break (c.restart_count, finished, backoff);
        }
        min_restarts = c.restart_count + 1;
    };

    node.stop_kubelet();
    node.start_kubelet();

    // The next attempt comes, but not before the recorded back-off has passed, and the
    // count only ever goes up from where it was.
    let next = restarts + 1;
    let pod = node
        .wait_pod("crasher", &format!("attempt {next} started"), |p| {
            let c = main_status(p);
            assert!(c.restart_count >= restarts, "restartCount went from {restarts} to {}", c.restart_count);
            c.restart_count >= next && started_at(&c, next).is_some()
        })
        .await;
    let c = main_status(&pod);
    assert_eq!(c.restart_count, next, "more than one restart happened: {c:?}");
    let started = started_at(&c, next).unwrap_or_default();
    assert!(
        started >= finished,
        "attempt {next} started at {started}, before attempt {restarts} finished at {finished}"
    );
    assert!(
        started - finished >= backoff,
        "attempt {next} started {}s after attempt {restarts} finished: below the recorded back-off of {backoff}s",
        started - finished
    );

    // And the back-off keeps doubling from the recorded one instead of starting again at 10 s.
    let pod = node
        .wait_pod("crasher", &format!("CrashLoopBackOff after restart {next}"), |p| {
            let c = main_status(p);
            c.restart_count == next && waiting(&c).is_some_and(|(reason, _)| reason == "CrashLoopBackOff")
        })
        .await;
    let (_, message) = waiting(&main_status(&pod)).unwrap_or_default();
    assert_eq!(backoff_secs(&message), Some((backoff * 2).min(300)), "{message}");

    node.pods().delete("crasher", Default::default()).await.unwrap();
    node.wait_gone("crasher").await;
}
