#!/bin/sh
# Creates (or removes) the network namespace `fl-demo` that the network
# examples in this directory inject their faults into. The host keeps its own
# interfaces untouched: faults only ever go into the namespace.
#
#   host  fl-demo-host 10.200.0.1/24  <-- veth -->  fl-demo-ns 10.200.0.2/24  (namespace fl-demo)
#
# Usage (as root):  sh experiments/netns-demo.sh up     # before the experiment
#                   sh experiments/netns-demo.sh down   # when you are done
set -eu
NS=fl-demo
case "${1:-}" in
up)
    ip netns add "$NS"
    ip link add fl-demo-host type veth peer name fl-demo-ns
    ip link set fl-demo-ns netns "$NS"
    ip addr add 10.200.0.1/24 dev fl-demo-host
    ip link set fl-demo-host up
    ip -n "$NS" addr add 10.200.0.2/24 dev fl-demo-ns
    ip -n "$NS" link set fl-demo-ns up
    ip -n "$NS" link set lo up
    ip -n "$NS" route add default via 10.200.0.1
    echo "namespace $NS ready: 10.200.0.1 (host side) <-> 10.200.0.2 ($NS)"
    ;;
down)
    ip link del fl-demo-host 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    echo "namespace $NS removed"
    ;;
*)
    echo "usage: $0 up|down" >&2
    exit 64
    ;;
esac
