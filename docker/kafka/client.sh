#!/usr/bin/env bash
# Runs a Kafka command-line tool against the brokers' BROKER listener (TLS with a client
# certificate), writing its client settings to a private temporary file first:
#   client.sh KEYSTORE TOOL [ARGS...]
#   client.sh /etc/kafka/secrets/kafka.p12 kafka-broker-api-versions.sh --bootstrap-server kafka-1:9091
# The keystore's password is read from $KEYSTORE_PASSWORD_FILE, the CA from $CA_FILE.
set -euo pipefail
keystore=$1
tool=$2
shift 2
# a small heap: the container's KAFKA_HEAP_OPTS is the broker's
export KAFKA_HEAP_OPTS="-Xmx256m"
password=$(head -n 1 "${KEYSTORE_PASSWORD_FILE:-/etc/kafka/secrets/keystore_password}")
umask 077
props=$(mktemp)
trap 'rm -f "$props"' EXIT
cat >"$props" <<PROPS
security.protocol=SSL
ssl.keystore.type=PKCS12
ssl.keystore.location=$keystore
ssl.keystore.password=$password
ssl.key.password=$password
ssl.truststore.type=PEM
ssl.truststore.location=${CA_FILE:-/etc/kafka/secrets/ca.crt}
PROPS
"/opt/kafka/bin/$tool" --command-config "$props" "$@"
