//! `logs` and `exec`, streamed through the apiserver's Streaming service (which
//! forwards to the kubelet of the pod's node). `logs KIND/NAME` reads the first pod
//! the object's selector picks, as kubectl does; `exec -t` puts the local terminal in
//! raw mode and forwards its size; `exec` exits with the command's exit code.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, Result};
use client::ListParams;
use proto::ApiError;
use proto::streaming::v1::streaming_client::StreamingClient;
use proto::streaming::v1::{ExecInput, ExecStart, LogsRequest, TerminalSize, exec_input, exec_output};
use serde_json::Value as Json;
use tokio::io::AsyncReadExt as _;
use tonic::transport::{Channel, Endpoint};

use super::{kind, server_error};
use crate::cli::{ExecArgs, LogsArgs};
use crate::connection::Connection;

/// The command ran and exited with this non-zero code; main exits with it.
#[derive(Debug)]
pub struct ExitCode(pub i32);

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "command terminated with exit code {}", self.0)
    }
}

impl std::error::Error for ExitCode {}

async fn channel(connection: &Connection) -> Result<StreamingClient<Channel>> {
    let server = connection.server();
    let endpoint = Endpoint::from_shared(server.to_string())
        .with_context(|| format!("server address {server:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let channel =
        endpoint.connect().await.map_err(|e| anyhow::anyhow!("cannot reach the apiserver at {server}: {e}"))?;
    Ok(StreamingClient::new(channel))
}

fn failure(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", server_error(&ApiError::from_grpc(&status)).trim_start_matches("error: "))
}

/// "10s", "5m", "2h", "1h30m" as seconds.
pub fn parse_since(text: &str) -> Result<i64> {
    let bad = || anyhow::anyhow!("invalid argument \"{text}\" for \"--since\": write a duration such as 10s, 5m or 2h");
    let mut total = 0i64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().map_err(|_| bad())?;
        number.clear();
        total += match c {
            's' => n,
            'm' => n * 60,
            'h' => n * 3600,
            _ => return Err(bad()),
        };
    }
    if !number.is_empty() || text.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// The pod `target` names: POD, pod/POD, or the first pod of KIND/NAME's selector.
async fn pod_of(connection: &Connection, target: &str) -> Result<String> {
    let Some((kind_name, name)) = target.split_once('/') else { return Ok(target.to_string()) };
    let info = kind(kind_name)?;
    if info.kind == "Pod" {
        return Ok(name.to_string());
    }
    let namespace = connection.scoped(info);
    let bytes = connection.client.get(info, &namespace, name).await.map_err(|e| anyhow::anyhow!(server_error(&e)))?;
    let object = proto::DynamicObject::new(info, bytes).to_json();
    let labels = match &object["spec"]["selector"] {
        Json::Object(s) if s.contains_key("matchLabels") => s["matchLabels"].clone(),
        // A Service's or ReplicationController's selector is a plain map.
        other => other.clone(),
    };
    let selector: Vec<String> = labels
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
        .unwrap_or_default();
    if selector.is_empty() {
        anyhow::bail!("cannot find the pods of {target}: it has no label selector");
    }
    let pods_info = kind("pods")?;
    let list = connection
        .client
        .list(pods_info, &namespace, &ListParams::labels(&selector.join(",")))
        .await
        .map_err(|e| anyhow::anyhow!(server_error(&e)))?;
    let mut names: Vec<String> =
        list.items.into_iter().map(|b| proto::DynamicObject::new(pods_info, b).metadata().name).collect();
    names.sort();
    names.into_iter().next().ok_or_else(|| anyhow::anyhow!("no pods of {target} found in namespace {namespace}"))
}

pub async fn logs(connection: &Connection, args: &LogsArgs) -> Result<()> {
    let (target, container) = match args.target.as_slice() {
        [target] => (target, args.container.clone()),
        // kubectl also takes the container as a second argument.
        [target, container] if args.container.is_none() => (target, Some(container.clone())),
        [] => anyhow::bail!("expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]': a pod name is required"),
        _ => anyhow::bail!("expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]': too many arguments"),
    };
    let pod = pod_of(connection, target).await?;
    let request = LogsRequest {
        namespace: connection.namespace.clone(),
        pod,
        container: container.unwrap_or_default(),
        follow: args.follow,
        previous: args.previous,
        tail_lines: args.tail.filter(|n| *n >= 0),
        since_seconds: args.since.as_deref().map(parse_since).transpose()?,
        timestamps: args.timestamps,
        limit_bytes: args.limit_bytes,
        pod_uid: String::new(),
    };
    let mut client = channel(connection).await?;
    let mut stream = client.logs(request).await.map_err(failure)?.into_inner();
    while let Some(chunk) = stream.message().await.map_err(failure)? {
        crate::stdout::write_all(&chunk.data);
    }
    Ok(())
}

/// The local terminal in raw mode while alive (for `exec -t`); restored on drop.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = nix::sys::termios::tcgetattr(&stdin).context("reading the terminal's settings")?;
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw)
            .context("putting the terminal in raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

fn terminal_size() -> Option<TerminalSize> {
    let mut ws = nix::libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize into the pointer, which outlives the call.
    let ok = unsafe { nix::libc::ioctl(1, nix::libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then(|| TerminalSize { width: ws.ws_col.into(), height: ws.ws_row.into() })
}

pub async fn exec(connection: &Connection, args: &ExecArgs) -> Result<()> {
    if args.command.is_empty() {
        anyhow::bail!("you must specify at least one command for the container: ctl exec POD -- COMMAND [ARGS...]");
    }
    let interactive_terminal = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    if args.tty && !args.stdin {
        eprintln!("Unable to use a TTY - input is not attached (pass -i as well)");
    }
    let tty = args.tty && args.stdin;
    let pod = pod_of(connection, &args.pod).await?;
    let start = ExecStart {
        namespace: connection.namespace.clone(),
        pod,
        container: args.container.clone().unwrap_or_default(),
        command: args.command.clone(),
        stdin: args.stdin,
        tty,
        size: if tty { terminal_size() } else { None },
        pod_uid: String::new(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ExecInput>(16);
    tx.send(ExecInput { input: Some(exec_input::Input::Start(start)) }).await?;
    if args.stdin {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(ExecInput { input: Some(exec_input::Input::StdinClosed(true)) }).await;
                        return;
                    }
                    Ok(n) => {
                        let data = bytes::Bytes::copy_from_slice(&buf[..n]);
                        if tx.send(ExecInput { input: Some(exec_input::Input::Stdin(data)) }).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    if tty && let Ok(mut resized) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) {
        let tx = tx.clone();
        tokio::spawn(async move {
            while resized.recv().await.is_some() {
                if let Some(size) = terminal_size()
                    && tx.send(ExecInput { input: Some(exec_input::Input::Resize(size)) }).await.is_err()
                {
                    return;
                }
            }
        });
    }
    // Our own sender stays alive until the end, so the call stays open after stdin ends.
    let _keep = tx;
    let outbound = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut client = channel(connection).await?;
    let mut stream = client.exec(outbound).await.map_err(failure)?.into_inner();
    let _raw = if tty && interactive_terminal { Some(RawMode::enter()?) } else { None };
    let mut code = None;
    while let Some(message) = stream.message().await.map_err(failure)? {
        match message.output {
            Some(exec_output::Output::Stdout(data)) => crate::stdout::write_all(&data),
            Some(exec_output::Output::Stderr(data)) => {
                let mut err = std::io::stderr().lock();
                err.write_all(&data).and_then(|()| err.flush()).context("writing stderr")?;
            }
            Some(exec_output::Output::ExitCode(c)) => {
                code = Some(c);
                break;
            }
            None => {}
        }
    }
    drop(_raw);
    match code {
        Some(0) => Ok(()),
        Some(c) => Err(ExitCode(c).into()),
        None => anyhow::bail!("the connection to the container ended before the command did"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_kubectl_durations_and_names_bad_ones() {
        assert_eq!(parse_since("10s").unwrap(), 10);
        assert_eq!(parse_since("1h30m").unwrap(), 5400);
        for bad in ["", "10", "5x", "m"] {
            let error = parse_since(bad).unwrap_err().to_string();
            assert!(error.contains("--since"), "{bad}: {error}");
        }
    }
}
