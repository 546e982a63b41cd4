#!/bin/sh
# The shop's database: redis-server, seeded once it answers.
/usr/bin/redis-server --port 6379 --save '' --appendonly no --protected-mode no &
pid=$!
trap 'kill -TERM $pid' TERM INT
until printf 'PING\r\n' | nc 127.0.0.1 6379 2>/dev/null | grep -q PONG; do sleep 0.1; done
printf 'SET item "blue teapot"\r\nQUIT\r\n' | nc 127.0.0.1 6379 >/dev/null
wait $pid
