#!/bin/sh
# Today's item: from the cache (1 s budget), else from the database (2 s),
# which then warms the cache. 503 when neither answers.
get() {
    printf 'GET item\r\nQUIT\r\n' | timeout "$2" nc "$1" 6379 2>/dev/null | tr -d '\r' | {
        read -r head || exit 0
        case "$head" in
        '$-1' | '') ;;
        '$'*) read -r v && printf '%s' "$v" ;;
        esac
    }
}
v=$(get cache 1)
src=cache
if [ -z "$v" ]; then
    v=$(get db 2)
    src=db
    if [ -n "$v" ]; then
        printf 'SET item "%s" EX 5\r\nQUIT\r\n' "$v" | timeout 1 nc cache 6379 >/dev/null 2>&1
    fi
fi
if [ -z "$v" ]; then
    printf 'Status: 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\nno data\n'
    exit 0
fi
printf 'Content-Type: text/plain\r\n\r\n%s (from %s)\n' "$v" "$src"
