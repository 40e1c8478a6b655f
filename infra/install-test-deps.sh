#!/usr/bin/env bash
# Installs what the integration tests run against, on a fresh Debian machine of the CI kind:
# Debian's clickhouse-server (a real native-protocol server), kcat (a third-party Kafka
# client), prometheus (with promtool: scrapes a worker, checks the alert rules), chromium and
# fonts-noto-cjk (the console's browser test), Apache Kafka's and Apache ZooKeeper's jars from
# Maven Central (cached), and mosquitto (the MQTT broker of the edge's gateway tests).
# Superset's virtualenv is `make bi-install`. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
need=()
{ command -v clickhouse-server || command -v clickhouse || test -x /usr/sbin/clickhouse-server || test -x /usr/bin/clickhouse; } >/dev/null 2>&1 || need+=(clickhouse-server)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)
# the console's browser test: Debian's Chromium (Playwright drives it by executable path; no
# browser download) and CJK fonts, without which every 汉字 renders as a box
test -x /usr/bin/chromium || need+=(chromium)
test -d /usr/share/fonts/opentype/noto || dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)
# the edge's MQTT tests run Debian's broker (in /usr/sbin, often not on a user's PATH)
{ command -v mosquitto || test -x /usr/sbin/mosquitto; } >/dev/null 2>&1 || need+=(mosquitto)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}"
fi
command -v java >/dev/null 2>&1 || { echo "Java 17+ is needed for Apache Kafka (install openjdk-17-jre-headless)" >&2; exit 1; }
"$here/kafka/fetch.sh" >/dev/null
# Apache ZooKeeper from Maven Central: the coordination service of the test ClickHouse cluster
# (2 shards x 2 replicas of the 18.16 server, infra/clickhouse_cluster.py)
"$here/zookeeper/fetch.sh" >/dev/null
echo "test dependencies ready: clickhouse-server, kcat, prometheus, chromium, fonts-noto-cjk, mosquitto, Kafka jars, ZooKeeper jars"
