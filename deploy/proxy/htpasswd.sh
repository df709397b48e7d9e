#!/bin/sh
# Runs in the nginx image before nginx starts (/docker-entrypoint.d/, deploy/docker-compose.yml): writes the
# proxy's users from TRADING_DAGSTER_PROXY_HTPASSWD (deploy/.env or the environment: one or more
# `user:hash` lines, made with `htpasswd -nbB USER PASSWORD` or `openssl passwd -apr1`) to /etc/nginx/htpasswd.
# No user, or a line without a hash, stops the container: the proxy never starts open.
# (TRADING_DAGSTER_PROXY_HTPASSWD_FILE moves the file: trading_dagster_tests/deploy/test_proxy.py.)
set -eu
target="${TRADING_DAGSTER_PROXY_HTPASSWD_FILE:-/etc/nginx/htpasswd}"
if [ -z "${TRADING_DAGSTER_PROXY_HTPASSWD:-}" ]; then
    echo "htpasswd.sh: TRADING_DAGSTER_PROXY_HTPASSWD is empty: set it in deploy/.env (htpasswd -nbB USER PASSWORD)" >&2
    exit 1
fi
printf '%s\n' "$TRADING_DAGSTER_PROXY_HTPASSWD" | tr ' ' '\n' | sed '/^$/d' > "$target.new"
if [ ! -s "$target.new" ]; then
    echo "htpasswd.sh: TRADING_DAGSTER_PROXY_HTPASSWD holds no user: set it in deploy/.env (htpasswd -nbB USER PASSWORD)" >&2
    rm -f "$target.new"
    exit 1
fi
# every line is user:hash with a hash nginx checks ($apr1$, bcrypt $2y$/$2b$, sha-512 $6$, sha-256 $5$); no {PLAIN}
if grep -qvE '^[^:[:space:]]+:(\$apr1\$|\$2[aby]\$|\$6\$|\$5\$)' "$target.new"; then
    echo "htpasswd.sh: TRADING_DAGSTER_PROXY_HTPASSWD holds a line that is not user:hash (apr1, bcrypt, sha-256/512)" >&2
    rm -f "$target.new"
    exit 1
fi
chmod 0640 "$target.new"
chown root:nginx "$target.new" 2>/dev/null || true
mv "$target.new" "$target"
echo "htpasswd.sh: $(wc -l < "$target") proxy user(s) in $target"
