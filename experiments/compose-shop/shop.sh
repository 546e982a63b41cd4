#!/bin/sh
# The compose-shop example stack: a web app (busybox httpd + a CGI), its
# cache (redis-server, labelled `app: cache-service`) and its database
# (redis-server, seeded at start). Every image is built here from binaries
# on this host (FROM scratch; nothing is pulled):
#     sudo sh experiments/compose-shop/shop.sh up     # build the images, start project `shop`
#     sudo faultline run experiments/compose-shop/cache-packet-loss.yaml
#     sudo faultline run experiments/compose-shop/cache-crash.yaml
#     sudo sh experiments/compose-shop/shop.sh down   # stop it, remove the images
# Needs: Docker with Compose (`docker compose` or `docker-compose`),
# busybox-static (/bin/busybox) and redis-server.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
project=${SHOP_PROJECT:-shop}

compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -p "$project" -f "$here/docker-compose.yml" "$@"
    else
        docker-compose -p "$project" -f "$here/docker-compose.yml" "$@"
    fi
}

# copy_with_libs BINARY DIR: the binary and every library ldd lists, at
# the same paths under DIR.
copy_with_libs() {
    cp -L --parents "$1" "$2"
    ldd "$1" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
        cp -L --parents "$lib" "$2"
    done
}

build() {
    for tool in /bin/busybox /usr/bin/redis-server; do
        [ -x "$tool" ] || { echo "shop.sh: $tool is missing (apt-get install busybox-static redis-server)" >&2; exit 69; }
    done
    ctx=$(mktemp -d)
    trap 'rm -rf "$ctx"' EXIT INT TERM
    mkdir -p "$ctx/web/bin" "$ctx/web/www/cgi-bin" "$ctx/redis/bin"
    cp /bin/busybox "$ctx/web/bin/busybox"
    cp "$here/web/index.html" "$ctx/web/www/index.html"
    cp "$here/web/item.cgi" "$ctx/web/www/cgi-bin/item"
    chmod 755 "$ctx/web/www/cgi-bin/item"
    cat > "$ctx/web/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY bin/busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
EXPOSE 80
CMD ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"]
DOCKERFILE
    cp /bin/busybox "$ctx/redis/bin/busybox"
    copy_with_libs /usr/bin/redis-server "$ctx/redis"
    cp "$here/db.sh" "$ctx/redis/db.sh"
    cat > "$ctx/redis/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY . /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
EXPOSE 6379
CMD ["/usr/bin/redis-server", "--port", "6379", "--save", "", "--appendonly", "no", "--protected-mode", "no"]
DOCKERFILE
    rm -f "$ctx/redis/Dockerfile.bak"
    DOCKER_BUILDKIT=0 docker build -q -t faultline-shop-web:local "$ctx/web" >/dev/null
    DOCKER_BUILDKIT=0 docker build -q -t faultline-shop-redis:local "$ctx/redis" >/dev/null
}

case "${1:-}" in
up)
    build
    compose up -d
    # Ready when the web app answers from the database or the cache.
    i=0
    until ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' shop-web 2>/dev/null) \
        && [ -n "$ip" ] && printf 'GET /cgi-bin/item HTTP/1.0\r\n\r\n' | busybox nc -w 2 "$ip" 80 2>/dev/null | grep -q teapot; do
        i=$((i + 1))
        [ "$i" -lt 60 ] || { echo "shop.sh: the shop did not come up" >&2; compose logs >&2 || true; exit 1; }
        sleep 0.5
    done
    echo "shop is up: web at http://$ip/cgi-bin/item"
    ;;
down)
    compose down --remove-orphans -t 2 || true
    docker rmi -f faultline-shop-web:local faultline-shop-redis:local >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: $0 up|down" >&2
    exit 64
    ;;
esac
