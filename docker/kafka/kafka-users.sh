#!/usr/bin/env bash
# Creates or updates the SCRAM-SHA-512 logins of the Kafka clients (service kafka-users in
# docker/compose.yaml, run once the brokers are healthy; running it again sets the
# passwords again): `streetwatch` for the central services, `edge` for the edge boxes.
set -euo pipefail
export KEYSTORE_PASSWORD_FILE=/run/secrets/kafka_keystore_password CA_FILE=/run/secrets/ca.crt
for user in streetwatch edge; do
  password=$(head -n 1 "/run/secrets/kafka_${user}_password")
  bash /opt/streetwatch/client.sh /run/secrets/kafka-admin.p12 kafka-configs.sh \
    --bootstrap-server kafka-1:9091,kafka-2:9091,kafka-3:9091 \
    --alter --entity-type users --entity-name "$user" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$password]"
  echo "kafka-users: $user set"
done
