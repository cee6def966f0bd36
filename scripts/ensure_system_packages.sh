#!/usr/bin/env bash
# Debian packages the distributed tests and `make up` need: a JDK and Maven (the Kafka broker
# comes from Maven Central as jars), the PostgreSQL server, and Chromium (the candidate page's
# browser test drives it headless). Installs only what is missing.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  missing+=(postgresql)
fi
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Poise needs these Debian packages: ${missing[*]} (install them, then run make again)" >&2
  exit 1
fi
echo "installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
