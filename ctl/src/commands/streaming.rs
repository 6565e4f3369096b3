//! `logs` and `exec`: both stream from the kubelet, whose streaming endpoint does not
//! exist yet. They say so and fail rather than hang or pretend.

use anyhow::Result;

use crate::cli::{ExecArgs, LogsArgs};

pub fn logs(args: &LogsArgs) -> Result<()> {
    let Some(target) = args.target.first() else {
        anyhow::bail!("expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]': a pod name is required");
    };
    anyhow::bail!(
        "logs of \"{target}\": this server does not support container logs yet (the kubelet's streaming endpoint is not implemented)"
    )
}

pub fn exec(args: &ExecArgs) -> Result<()> {
    if args.command.is_empty() {
        anyhow::bail!("you must specify at least one command for the container: ctl exec POD -- COMMAND [ARGS...]");
    }
    anyhow::bail!(
        "exec in \"{}\": this server does not support exec yet (the kubelet's streaming endpoint is not implemented)",
        args.pod
    )
}
