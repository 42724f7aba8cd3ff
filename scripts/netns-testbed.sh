#!/usr/bin/env bash
# A multi-host test bed on one machine: network namespaces as hosts, joined by a bridge in a namespace of its own.
#
#   scripts/netns-testbed.sh up   [PREFIX]   make PREFIX-sw (the switch), PREFIX-h1..h3 (service hosts, 10.77.0.11-13)
#                                            and PREFIX-c (the client host, 10.77.0.100)
#   scripts/netns-testbed.sh down [PREFIX]   remove them (and anything still running in them)
#   scripts/netns-testbed.sh status [PREFIX]
#   scripts/netns-testbed.sh link HOST down|up [PREFIX]   packets to/from HOST vanish (its link set down inside it)
#   scripts/netns-testbed.sh slow HOST|fast HOST [PREFIX] a slow link on HOST (tc tbf, 256 kbit/s) / back to normal
#
# Run as root (ip netns). PREFIX defaults to "rpcf"; give each concurrent test bed its own (the pytest fixture uses
# one per process). Nothing touches the machine's own namespace: every interface is created inside the bed's
# namespaces, the addresses (10.77.0.0/24) exist only there, and no route leads out, so no packet leaves the bed.
# Neighbour (ARP) entries are permanent, so a host whose link is down is silent (no "host unreachable" either):
# packets to it vanish, as across a router to a dead machine.
#
# Inside PREFIX-c, `ip netns exec` bind-mounts /etc/netns/PREFIX-c/hosts over /etc/hosts: the names h1, h2, h3,
# client, and svc (all three service hosts, for multi-address DNS tests) resolve there and nowhere else.
# A run that fails half-way removes what it made; `down` is idempotent.
set -euo pipefail

HOSTS=(h1 h2 h3)
declare -A ADDR=([h1]=10.77.0.11 [h2]=10.77.0.12 [h3]=10.77.0.13 [c]=10.77.0.100)

usage() {
    sed -n '2,20p' "$0" >&2
    exit 2
}

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "netns-testbed: needs root (ip netns add); run it with sudo" >&2
        exit 1
    fi
}

check_prefix() {
    if ! [[ "$1" =~ ^[a-z][a-z0-9]{0,15}$ ]]; then
        echo "netns-testbed: PREFIX must be 1-16 lowercase letters/digits starting with a letter, not '$1'" >&2
        exit 2
    fi
}

down() {
    local prefix=$1 ns pid
    for ns in "$prefix-c" "${HOSTS[@]/#/$prefix-}" "$prefix-sw"; do
        if ip netns list | grep -qx "$ns\( (id: [0-9]*)\)\?"; then
            # Processes left inside (a crashed test) would keep the namespace alive after its name is gone.
            for pid in $(ip netns pids "$ns" 2>/dev/null); do
                kill -KILL "$pid" 2>/dev/null || true
            done
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    rm -rf "/etc/netns/$prefix-c"
    rmdir /etc/netns 2>/dev/null || true
}

mac_of() {
    ip -n "$1" -o link show eth0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'
}

up() {
    local prefix=$1 sw="$1-sw" host ns other
    down "$prefix"
    trap 'down "$prefix"; echo "netns-testbed: up failed; removed what was made" >&2' ERR
    ip netns add "$sw"
    ip -n "$sw" link set lo up
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" link set br0 up
    for host in "${HOSTS[@]}" c; do
        ns="$prefix-$host"
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # Both ends are made inside the bed's namespaces: nothing appears in the machine's own namespace.
        ip -n "$sw" link add "p-$host" type veth peer name eth0 netns "$ns"
        ip -n "$sw" link set "p-$host" master br0 up
        ip -n "$ns" addr add "${ADDR[$host]}/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
    for host in "${HOSTS[@]}" c; do
        for other in "${HOSTS[@]}" c; do
            [ "$host" = "$other" ] && continue
            ip -n "$prefix-$host" neigh replace "${ADDR[$other]}" lladdr "$(mac_of "$prefix-$other")" dev eth0 \
                nud permanent
        done
    done
    mkdir -p "/etc/netns/$prefix-c"
    {
        echo "127.0.0.1 localhost"
        for host in "${HOSTS[@]}"; do echo "${ADDR[$host]} $host"; done
        echo "${ADDR[c]} client"
        for host in "${HOSTS[@]}"; do echo "${ADDR[$host]} svc"; done
    } >"/etc/netns/$prefix-c/hosts"
    trap - ERR
    status "$prefix"
}

status() {
    local prefix=$1 host
    for host in "${HOSTS[@]}" c; do
        if ip netns list | grep -q "^$prefix-$host\b"; then
            echo "$prefix-$host ${ADDR[$host]} $(ip -n "$prefix-$host" -o link show eth0 | grep -o 'state [A-Z]*')"
        else
            echo "$prefix-$host absent"
        fi
    done
}

host_ns() {
    case "$2" in
        h1 | h2 | h3 | c) echo "$1-$2" ;;
        *)
            echo "netns-testbed: unknown host '$2' (h1, h2, h3 or c)" >&2
            exit 2
            ;;
    esac
}

command=${1:-}
case "$command" in
    up | down | status)
        prefix=${2:-rpcf}
        check_prefix "$prefix"
        need_root
        "$command" "$prefix"
        ;;
    link)
        [ $# -ge 3 ] || usage
        prefix=${4:-rpcf}
        check_prefix "$prefix"
        need_root
        case "$3" in
            down | up) ip -n "$(host_ns "$prefix" "$2")" link set eth0 "$3" ;;
            *) usage ;;
        esac
        ;;
    slow | fast)
        [ $# -ge 2 ] || usage
        prefix=${3:-rpcf}
        check_prefix "$prefix"
        need_root
        ns=$(host_ns "$prefix" "$2")
        if [ "$command" = slow ]; then
            ip netns exec "$ns" tc qdisc replace dev eth0 root tbf rate 256kbit burst 4kb latency 500ms
        else
            ip netns exec "$ns" tc qdisc del dev eth0 root 2>/dev/null || true
        fi
        ;;
    *) usage ;;
esac
