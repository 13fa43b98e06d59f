# The real services the tests need, for .ci/run (sourced: it exports what the tests read).
#   - PostgreSQL: the registry and monitor-store suites run on it as well as on SQLite. A
#     throwaway server (initdb into a temp folder, a free port on 127.0.0.1, password login)
#     that stops when the calling shell exits; $LMFORGE_TEST_POSTGRES_URL names it.
#   - Chromium (headless): tests/e2e/test_monitor_dashboard.py renders the dashboard with it.
# Debian packages only (apt-get), as root or through sudo; safe to run again (apt-get install of
# what is there is a no-op, and every run starts its own server).

ci_as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
ci_as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
ci_postgres_bin() { printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1; }  # the newest installed

ci_install_services() {
  # fonts-liberation: a fresh container has no fonts at all, and Chromium needs one to lay out text.
  local packages=(postgresql chromium fonts-liberation) start=$SECONDS
  echo "ci: apt-get install ${packages[*]}"
  ci_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  ci_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
  echo "ci: installed ${packages[*]} in $((SECONDS - start)) s: $(chromium --version)," \
    "$(ci_postgres_bin)"
}

ci_start_postgres() {
  local bin dir port start=$SECONDS
  bin=$(ci_postgres_bin)
  dir=$(mktemp -d /tmp/lmforge-ci-postgres.XXXXXX)
  chown postgres: "$dir" 2>/dev/null || ci_as_root chown postgres: "$dir"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "ci: starting PostgreSQL ($bin) in $dir on 127.0.0.1:$port"
  # Superuser by peer login on the folder's socket only; the tests' role by password over TCP.
  ci_as_postgres "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C \
    --auth-local=peer --auth-host=scram-sha-256 --no-sync >"$dir/initdb.log"
  # Stopped and removed on exit, whatever the exit; `|| true`: the trap must not change the status.
  # shellcheck disable=SC2064  # expand now: the stop must name this server
  trap "ci_as_postgres '$bin/pg_ctl' -D '$dir/data' -m fast stop >/dev/null 2>&1 || true; ci_as_root rm -rf '$dir' || true" EXIT
  # A throwaway server: no fsync (every test creates and drops a database).
  ci_as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c full_page_writes=off -c synchronous_commit=off" \
    >/dev/null || { cat "$dir/server.log" >&2; return 1; }
  ci_as_postgres "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
    -c "CREATE ROLE lmforge LOGIN CREATEDB PASSWORD 'lmforge'" -c "CREATE DATABASE lmforge OWNER lmforge"
  export LMFORGE_TEST_POSTGRES_URL="postgresql+psycopg://lmforge:lmforge@127.0.0.1:$port/lmforge"
  echo "ci: PostgreSQL $(ci_as_postgres "$bin/postgres" --version | awk '{print $3}') ready in" \
    "$((SECONDS - start)) s: LMFORGE_TEST_POSTGRES_URL=postgresql+psycopg://lmforge:***@127.0.0.1:$port/lmforge"
}
