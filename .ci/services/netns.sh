#!/usr/bin/env bash
# Sourced by slurm.sh and ray.sh: compute "nodes" of a CI cluster on this one machine, each a network
# namespace with its own address and hostname, joined by a bridge in the root namespace.
#
#   netns_up NS ADDR          the bridge (once) and namespace NS with a veth pair and ADDR/24 on it
#   netns_exec NS HOST CMD..  run CMD inside NS as host HOST (see below); exec's, so `&` it or call it last
#   netns_kill NS [SIG]       signal every process that lives in NS (the node "dies" with SIGKILL)
#   netns_down NS             kill what runs in NS, delete it; the bridge too once no namespace is left on it
#
# Why it is built so (measured on Debian 12, 2 cores; docs/cluster.md, "CI's multi-node cluster"):
#  * A node is entered with `nsenter --net=... unshare --uts --mount`, never `ip netns exec`: the latter
#    remounts /sys, which hides the cgroup mounts, and slurmd then exits ("No filesystem mounted on
#    /sys/fs/cgroup"). The private mount namespace only bind-mounts the node's own /etc/hosts (every node's
#    name and address) and a resolv.conf naming 127.0.0.1: without it torch's gloo rendezvous waits ~10 s
#    per reverse lookup of a peer's address on a machine with no reachable DNS.
#  * Addresses: one private /24 (NETNS_PREFIX, default 10.250.77) that this script creates and only these
#    namespaces use: the bridge is .1, Slurm's nodes .11-.19, Ray's .21-.29. No route leaves the machine:
#    the bridge has no uplink and nothing forwards to it.
#  * Everything is named with the prefix `lxci` (bridge lxci0, namespaces lxci-*, veths lxv*), so `down`
#    removes only what these scripts made.

netns_prefix="${NETNS_PREFIX:-10.250.77}"
netns_bridge="lxci0"
# exported: a node entered from a child shell (`bash -c '. netns.sh; netns_exec ...'`) finds the same files
export NETNS_STATE="${NETNS_STATE:-${LAUNCHER_CI_STATE:-${repo:-.}/.ci/state}/netns}"
netns_state="$NETNS_STATE"

netns_hosts_file() {
    # every node of both CI clusters, so a Ray node can name a Slurm node and back; static, written once
    mkdir -p "$netns_state"
    local f="$netns_state/hosts"
    if [[ ! -s "$f" ]]; then
        {
            echo "127.0.0.1 localhost"
            echo "$netns_prefix.1 lxci-ctl"
            local i
            for i in 1 2 3 4 5 6 7 8 9; do echo "$netns_prefix.1$i lxci-s$i"; done
            for i in 1 2 3 4 5 6 7 8 9; do echo "$netns_prefix.2$i lxci-r$i"; done
        } >"$f.tmp" && mv "$f.tmp" "$f"
    fi
    [[ -s "$netns_state/resolv.conf" ]] || echo "nameserver 127.0.0.1" >"$netns_state/resolv.conf"
    echo "$f"
}

netns_bridge_up() {
    if ! ip link show "$netns_bridge" >/dev/null 2>&1; then
        ip link add "$netns_bridge" type bridge
        ip addr add "$netns_prefix.1/24" dev "$netns_bridge"
    fi
    ip link set "$netns_bridge" up
}

netns_up() {  # netns_up NS ADDR
    local ns=$1 addr=$2 veth="lxv${1#lxci-}"
    netns_bridge_up
    netns_hosts_file >/dev/null
    if ! [[ -e "/run/netns/$ns" ]]; then
        ip netns add "$ns"
    fi
    if ! ip link show "$veth" >/dev/null 2>&1; then
        ip link add "$veth" type veth peer name eth0 netns "$ns"
        ip link set "$veth" master "$netns_bridge" up
        ip -n "$ns" addr add "$addr/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        ip -n "$ns" route add default via "$netns_prefix.1" 2>/dev/null || true
    fi
}

netns_exec() {  # netns_exec NS HOST CMD...: exec CMD inside NS as HOST, with the node's hosts and resolv.conf
    local ns=$1 host=$2; shift 2
    local hosts; hosts="$(netns_hosts_file)"
    exec nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation private bash -c '
        mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && hostname "$3" || exit 97
        shift 3; exec "$@"' netns-exec "$hosts" "$netns_state/resolv.conf" "$host" "$@"
}

netns_pids() {  # the processes that live in NS (their network namespace is NS's)
    [[ -e "/run/netns/$1" ]] && ip netns pids "$1" 2>/dev/null || true
}

netns_kill() {  # netns_kill NS [SIGNAL]
    local pids
    pids="$(netns_pids "$1")"
    [[ -n "$pids" ]] && kill "-${2:-KILL}" $pids 2>/dev/null || true
}

netns_down() {  # netns_down NS
    local ns=$1 veth="lxv${1#lxci-}" i
    if [[ -e "/run/netns/$ns" ]]; then
        netns_kill "$ns" TERM
        for ((i = 0; i < 25; i++)); do [[ -z "$(netns_pids "$ns")" ]] && break; sleep 0.2; done
        netns_kill "$ns" KILL
        ip netns del "$ns" 2>/dev/null || true
    fi
    ip link del "$veth" 2>/dev/null || true
    # the bridge goes when no namespace of ours is left on it
    if ip link show "$netns_bridge" >/dev/null 2>&1 && [[ -z "$(ip -o link show master "$netns_bridge" 2>/dev/null)" ]]; then
        ip link del "$netns_bridge" 2>/dev/null || true
    fi
}
