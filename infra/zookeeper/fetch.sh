#!/usr/bin/env bash
# Fetch Apache ZooKeeper's jars (with the run-time pieces it leaves "provided" and an slf4j
# backend) from Maven Central into a cached classpath folder, for the test ClickHouse cluster.
# Idempotent: does nothing when the folder is already complete.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${FANGXIAN_ZOOKEEPER_LIB:-${XDG_CACHE_HOME:-$HOME/.cache}/fangxian/zookeeper-lib}"
stamp="$dest/.complete-$(sha1sum "$here/pom.xml" | cut -c1-12)"
if [ -f "$stamp" ]; then
  echo "$dest"
  exit 0
fi
mkdir -p "$dest"
rm -f "$dest"/*.jar "$dest"/.complete-*
mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$dest" >&2
touch "$stamp"
echo "$dest"
