#!/usr/bin/env bash
# Restart the Dispatcher on each host in turn, each once the previous one is ready again: no call fails.
set -euo pipefail
for host in dm1.example.org dm2.example.org dm3.example.org; do
    ssh "$host" systemctl restart rpcframework-dispatcher@9135
    for _ in $(seq 60); do
        curl -fsS "http://$host:19135/readyz" >/dev/null 2>&1 && break
        sleep 1
    done
done
