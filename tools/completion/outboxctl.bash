# bash completion for outboxctl (installed as
# /usr/share/bash-completion/completions/outboxctl).
# Subcommands and their options are read from `outboxctl --help` and
# `outboxctl CMD --help`, so this file never falls behind the program; queue
# ids come from `outboxctl queue`, upstream names from `outboxctl upstreams`,
# with the --config/--spool given on the command line.

_outboxctl_subcommands() {
    outboxctl --help 2>/dev/null | awk '/^Subcommands:/ { s = 1; next } s && /^  [a-z]/ { print $1 }'
}

_outboxctl_options() {
    outboxctl "$1" --help 2>/dev/null | grep -oE -- '(^|[ ,])--?[a-zA-Z][-a-zA-Z0-9]*' | tr -d ' ,' | sort -u
}

_outboxctl() {
    local cur prev i cmd="" cfg=()
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=""
    [ "$COMP_CWORD" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD-1]}
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            --config|--spool) cfg+=("${COMP_WORDS[i]}" "${COMP_WORDS[i+1]}"); ((i++)) ;;
            -*) ;;
            *) [ -z "$cmd" ] && cmd=${COMP_WORDS[i]} ;;
        esac
    done
    case $prev in
        --config|--spool)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --state)
            COMPREPLY=($(compgen -W "queued active deferred held sent failed" -- "$cur")); return ;;
        --upstream)
            COMPREPLY=($(compgen -W "$(outboxctl "${cfg[@]}" upstreams --json 2>/dev/null |
                sed -n 's/.*"name": *"\([^"]*\)".*/\1/p')" -- "$cur")); return ;;
    esac
    if [ -z "$cmd" ]; then
        COMPREPLY=($(compgen -W "$(_outboxctl_subcommands) --config --spool --help --version" -- "$cur"))
        return
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_outboxctl_options "$cmd")" -- "$cur"))
        return
    fi
    case $cmd in
        show|hold|release|delete|retry)
            COMPREPLY=($(compgen -W "$(outboxctl "${cfg[@]}" queue 2>/dev/null |
                awk 'NR > 1 && $1 ~ /^[0-9A-Za-z]+$/ && length($1) == 14 { print $1 }' | head -500)" -- "$cur")) ;;
        resume|test-upstream)
            COMPREPLY=($(compgen -W "$(outboxctl "${cfg[@]}" upstreams --json 2>/dev/null |
                sed -n 's/.*"name": *"\([^"]*\)".*/\1/p')" -- "$cur")) ;;
    esac
}
complete -F _outboxctl outboxctl
