//! `completion bash|zsh`: shell scripts that complete verbs, kinds, flags and, by
//! asking `ctl get -o name`, object names.

use anyhow::Result;

const VERBS: &str = "annotate api-resources apply cluster-info completion config cordon create delete describe drain edit exec expose get label logs patch rollout run scale set taint uncordon version wait";

fn kinds() -> String {
    let mut names: Vec<&str> = Vec::new();
    for k in proto::KINDS {
        names.push(k.plural);
        names.extend(k.short_names.iter().copied());
    }
    names.join(" ")
}

pub fn completion(shell: &str) -> Result<()> {
    let kinds = kinds();
    match shell {
        "bash" => print!("{}", bash(&kinds)),
        "zsh" => print!("#compdef ctl\nautoload -U bashcompinit && bashcompinit\n{}", bash(&kinds)),
        other => anyhow::bail!("unsupported shell type \"{other}\": use bash or zsh"),
    }
    Ok(())
}

fn bash(kinds: &str) -> String {
    format!(
        r#"# ctl completion for bash: source <(ctl completion bash)
_ctl_complete() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}"
    local verbs="{VERBS}"
    local kinds="{kinds}"
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "$verbs" -- "$cur"))
        return
    fi
    local verb="${{COMP_WORDS[1]}}"
    case "$verb" in
        config)
            [[ $COMP_CWORD -eq 2 ]] && COMPREPLY=($(compgen -W "view use-context current-context get-contexts set-context" -- "$cur"))
            return;;
        rollout)
            [[ $COMP_CWORD -eq 2 ]] && COMPREPLY=($(compgen -W "status history undo restart pause resume" -- "$cur"))
            return;;
        completion)
            COMPREPLY=($(compgen -W "bash zsh" -- "$cur"))
            return;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "--namespace --all-namespaces --output --selector --filename --kubeconfig --context --server --dry-run --watch" -- "$cur"))
        return
    fi
    if [[ $COMP_CWORD -eq 2 ]]; then
        COMPREPLY=($(compgen -W "$kinds" -- "$cur"))
        return
    fi
    local names
    names=$(ctl get "${{COMP_WORDS[2]}}" -o custom-columns=N:.metadata.name --no-headers 2>/dev/null)
    COMPREPLY=($(compgen -W "$names" -- "$cur"))
}}
complete -F _ctl_complete ctl
"#
    )
}
