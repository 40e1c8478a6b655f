#!/usr/bin/env bash
# Start the compose stack's Kafka node (apache/kafka image) with authentication on every
# listener: no PLAINTEXT listener exists.
#
#   INTERNAL  SASL_PLAINTEXT :9092  the compose network (fangxian services)
#   EXTERNAL  SASL_PLAINTEXT :9094  published for devices; SASL_SSL when KAFKA_EXTERNAL_TLS_PEM
#                                   names a PEM file (PKCS#8 key + certificate chain)
#   CONTROLLER SASL_PLAINTEXT :9093 (PLAIN, super user only; never published)
#
# SCRAM-SHA-512 for clients; the super user's credential is written into the metadata log when
# the storage is formatted (first start); every other user and every ACL is made by the `acl`
# service (`fangxian acl apply`). StandardAuthorizer, nothing allowed without an ACL.
#
# Environment: KAFKA_ADMIN_PASSWORD (or KAFKA_ADMIN_PASSWORD_FILE), KAFKA_EXTERNAL_HOST,
# CLUSTER_ID, optional KAFKA_EXTERNAL_TLS_PEM. `--print-config` prints server.properties (the
# admin password masked) and exits: tests/unit/test_compose.py checks it.
#
# A cluster (compose's `cluster` profile, docs/deploy.md): KAFKA_NODES=3 and KAFKA_NODE_ID 1, 2
# or 3 on the services kafka, kafka-2, kafka-3 — three combined broker + controller nodes, the
# three controllers the voter set, the internal topics (consumer offsets, transaction state log)
# and the broker defaults replicated 3 with min.insync.replicas 2. KAFKA_EXTERNAL_PORT is the
# node's published external port (each node advertises its own).
set -euo pipefail

KAFKA_HOME="${KAFKA_HOME:-/opt/kafka}"
CONFIG_DIR="${FANGXIAN_KAFKA_CONFIG_DIR:-/tmp/fangxian-kafka}"
DATA_DIR="${KAFKA_LOG_DIRS:-/var/lib/kafka/data}"
ADMIN_USER="${KAFKA_ADMIN_USER:-admin}"
EXTERNAL_HOST="${KAFKA_EXTERNAL_HOST:-127.0.0.1}"
SCRAM=SCRAM-SHA-512
NODE_ID="${KAFKA_NODE_ID:-1}"
NODES="${KAFKA_NODES:-1}"
EXTERNAL_PORT="${KAFKA_EXTERNAL_PORT:-9094}"

# node 1 is the compose service `kafka`, node n > 1 the service `kafka-n`
node_host() {
  if [ "$1" = 1 ]; then echo kafka; else echo "kafka-$1"; fi
}
case "$NODES" in
  1|3) ;;
  *) echo "KAFKA_NODES: 1 or 3, not $NODES" >&2; exit 2 ;;
esac
SELF_HOST="$(node_host "$NODE_ID")"
VOTERS=""
for n in $(seq 1 "$NODES"); do
  VOTERS="${VOTERS:+$VOTERS,}$n@$(node_host "$n"):9093"
done
if [ "$NODES" -ge 3 ]; then REPLICAS=3; IN_SYNC=2; else REPLICAS=1; IN_SYNC=1; fi

if [ -n "${KAFKA_ADMIN_PASSWORD_FILE:-}" ]; then
  KAFKA_ADMIN_PASSWORD="$(cat "$KAFKA_ADMIN_PASSWORD_FILE")"
fi
if [ -z "${KAFKA_ADMIN_PASSWORD:-}" ]; then
  echo "KAFKA_ADMIN_PASSWORD is not set (see .env.example) — Kafka 管理员密码未设置" >&2
  exit 2
fi
case "$KAFKA_ADMIN_PASSWORD" in
  *[!A-Za-z0-9]*) echo "KAFKA_ADMIN_PASSWORD: letters and digits only (openssl rand -hex 32)" >&2; exit 2 ;;
esac

external_protocol=SASL_PLAINTEXT
if [ -n "${KAFKA_EXTERNAL_TLS_PEM:-}" ]; then
  external_protocol=SASL_SSL
fi

scram_login() {
  echo "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$ADMIN_USER\" password=\"$1\";"
}

server_properties() {
  local password="$1"
  cat <<EOF
process.roles=broker,controller
node.id=${NODE_ID}
controller.quorum.voters=${VOTERS}
controller.listener.names=CONTROLLER
listeners=INTERNAL://:9092,CONTROLLER://:9093,EXTERNAL://:9094
advertised.listeners=INTERNAL://${SELF_HOST}:9092,EXTERNAL://${EXTERNAL_HOST}:${EXTERNAL_PORT}
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT,EXTERNAL:${external_protocol}
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=${SCRAM}
sasl.mechanism.inter.broker.protocol=${SCRAM}
listener.name.internal.scram-sha-512.sasl.jaas.config=$(scram_login "$password")
listener.name.external.scram-sha-512.sasl.jaas.config=$(scram_login "$password")
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$ADMIN_USER" password="$password" user_${ADMIN_USER}="$password";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:${ADMIN_USER}
log.dirs=${DATA_DIR}
auto.create.topics.enable=false
default.replication.factor=${REPLICAS}
min.insync.replicas=${IN_SYNC}
offsets.topic.replication.factor=${REPLICAS}
transaction.state.log.replication.factor=${REPLICAS}
transaction.state.log.min.isr=${IN_SYNC}
share.coordinator.state.topic.replication.factor=${REPLICAS}
share.coordinator.state.topic.min.isr=${IN_SYNC}
EOF
  if [ "$external_protocol" = SASL_SSL ]; then
    echo "listener.name.external.ssl.keystore.type=PEM"
    echo "listener.name.external.ssl.keystore.location=${KAFKA_EXTERNAL_TLS_PEM}"
  fi
}

if [ "${1:-}" = "--print-config" ]; then
  server_properties '****'
  exit 0
fi

umask 077
mkdir -p "$CONFIG_DIR"
server_properties "$KAFKA_ADMIN_PASSWORD" > "$CONFIG_DIR/server.properties"
# for the healthcheck and for an operator's `kafka-*.sh --command-config`
cat > "$CONFIG_DIR/admin.properties" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=${SCRAM}
sasl.jaas.config=$(scram_login "$KAFKA_ADMIN_PASSWORD")
EOF

"$KAFKA_HOME/bin/kafka-storage.sh" format --ignore-formatted \
  --cluster-id "${CLUSTER_ID:?set CLUSTER_ID}" \
  --config "$CONFIG_DIR/server.properties" \
  --add-scram "${SCRAM}=[name=${ADMIN_USER},password=${KAFKA_ADMIN_PASSWORD}]"
exec "$KAFKA_HOME/bin/kafka-server-start.sh" "$CONFIG_DIR/server.properties"
