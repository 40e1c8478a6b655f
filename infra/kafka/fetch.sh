#!/usr/bin/env bash
# Fetch Apache Kafka's jars (and a log4j2 backend) from Maven Central into a cached classpath
# folder. Idempotent: does nothing when the folder is already complete.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${FANGXIAN_KAFKA_LIB:-${XDG_CACHE_HOME:-$HOME/.cache}/fangxian/kafka-lib}"
stamp="$dest/.complete-$(sha1sum "$here/pom.xml" | cut -c1-12)"
if [ -f "$stamp" ]; then
  echo "$dest"
  exit 0
fi
mkdir -p "$dest"
# a changed pom.xml must not leave the previous set's jars (e.g. a second slf4j-api) behind
rm -f "$dest"/*.jar "$dest"/.complete-*
mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$dest" >&2
touch "$stamp"
echo "$dest"
