#!/usr/bin/env bash
# Makes the real secrets of the deployment into OUT_DIR (docker/README.md): a CA, the
# brokers' and mosquitto's certificates, the Kafka keystores, every password, the
# evidence and session keys, an upload token per edge box. Run it once, on a trusted
# machine, into a folder outside the repository; point STREETWATCH_SECRETS at it.
#
#   docker/make-secrets.sh OUT_DIR
#
# Settings (environment): KAFKA_PUBLIC_HOST, MQTT_PUBLIC_HOST (the names edge boxes
# reach the centre by; the certificates carry them), BOXES (edge box ids, space
# separated), DAYS (certificate life). Needs openssl, and mosquitto_passwd (Debian
# package mosquitto) or docker to hash the MQTT passwords. Run as root, it also gives
# each file to the user that reads it (kafka 1000, mosquitto 1883, postgres 999,
# streetwatch 10001); otherwise do that yourself (docker/README.md).
set -euo pipefail

out=${1:?usage: $0 OUT_DIR}
KAFKA_PUBLIC_HOST=${KAFKA_PUBLIC_HOST:-kafka.streetwatch.example}
MQTT_PUBLIC_HOST=${MQTT_PUBLIC_HOST:-mqtt.streetwatch.example}
BOXES=${BOXES:-ws-01}
DAYS=${DAYS:-825}
MOSQUITTO_IMAGE=eclipse-mosquitto:2.0.22

if [ -e "$out/ca.crt" ]; then
  echo "make-secrets: $out already holds secrets; remove it first to make new ones" >&2
  exit 1
fi
if [ "$(realpath -m "$out")" = "$(realpath -m "$(dirname "$0")/secrets")" ]; then
  echo "make-secrets: docker/secrets holds the placeholders; use a folder outside the repository" >&2
  exit 1
fi
mkdir -p "$out" "$out/ca-private"
chmod 700 "$out" "$out/ca-private"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

password() { openssl rand -hex 24; }

# The CA: its key goes to ca-private/ (keep it offline; it signs new certificates).
openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -sha256 -subj "/CN=streetwatch-ca" \
  -keyout "$out/ca-private/ca.key" -out "$out/ca.crt" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null

# sign NAME SUBJECT_ALT_NAMES EXTENDED_KEY_USAGE: $work/NAME.key and $work/NAME.crt
sign() {
  local name=$1 sans=$2 eku=$3
  openssl req -newkey rsa:3072 -nodes -subj "/CN=$name" -keyout "$work/$name.key" \
    -out "$work/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } >"$work/$name.ext"
  openssl x509 -req -in "$work/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca-private/ca.key" \
    -CAserial "$work/ca.srl" -CAcreateserial -out "$work/$name.crt" -days "$DAYS" -sha256 -extfile "$work/$name.ext" \
    2>/dev/null
}

# Kafka: one keystore per broker (TLS for clients, brokers and controllers, whose
# listeners ask each other for these certificates) and one for the admin tools.
password >"$out/kafka_keystore_password"
for n in 1 2 3; do
  sign "kafka-$n" "DNS:kafka-$n,DNS:$KAFKA_PUBLIC_HOST" "serverAuth,clientAuth"
  openssl pkcs12 -export -in "$work/kafka-$n.crt" -inkey "$work/kafka-$n.key" \
    -certfile "$out/ca.crt" -name "kafka-$n" -out "$out/kafka-$n.p12" \
    -passout "file:$out/kafka_keystore_password"
done
sign kafka-admin "" clientAuth
openssl pkcs12 -export -in "$work/kafka-admin.crt" -inkey "$work/kafka-admin.key" \
  -certfile "$out/ca.crt" -name kafka-admin -out "$out/kafka-admin.p12" \
  -passout "file:$out/kafka_keystore_password"
password >"$out/kafka_streetwatch_password"
password >"$out/kafka_edge_password"

# mosquitto: the TLS listener's certificate and the hashed logins.
sign mosquitto "DNS:mosquitto,DNS:localhost,DNS:$MQTT_PUBLIC_HOST" serverAuth
cp "$work/mosquitto.crt" "$work/mosquitto.key" "$out/"
for user in edge sensors health; do password >"$out/mqtt_${user}_password"; done
: >"$out/mosquitto_passwd"
for user in edge sensors health; do
  if command -v mosquitto_passwd >/dev/null; then
    mosquitto_passwd -b "$out/mosquitto_passwd" "$user" "$(cat "$out/mqtt_${user}_password")"
  else
    docker run --rm -v "$out:/out" "$MOSQUITTO_IMAGE" \
      mosquitto_passwd -b /out/mosquitto_passwd "$user" "$(cat "$out/mqtt_${user}_password")"
  fi
done

# PostgreSQL: the server's password, and the same as a libpq passfile for the services.
password >"$out/postgres_password"
echo "postgres:5432:*:streetwatch:$(cat "$out/postgres_password")" >"$out/postgres_passfile"

# Keys of the evidence links and of the workbench's session cookies.
openssl rand -hex 32 >"$out/evidence_link_secret"
openssl rand -hex 32 >"$out/review_session_secret"

# An upload token per edge box; the centre keeps only its sha256.
echo "# [[evidence.boxes]] entries for docker/config/centre.toml:" >"$out/evidence-boxes.toml"
for box in $BOXES; do
  token=$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')
  printf '%s\n' "$token" >"$out/evidence_token_$box"
  digest=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
  printf '[[evidence.boxes]]\nbox_id = "%s"\ntoken_sha256 = "%s"\n\n' "$box" "$digest" \
    >>"$out/evidence-boxes.toml"
done

chmod 644 "$out/ca.crt" "$out/evidence-boxes.toml"
if [ "$(id -u)" = 0 ]; then
  chown 1000:1000 "$out"/kafka-*.p12 "$out/kafka_keystore_password"
  chown 1883:1883 "$out"/mosquitto.crt "$out"/mosquitto.key "$out/mosquitto_passwd"
  chown 999:999 "$out/postgres_password"
  chown 10001:10001 "$out"/kafka_streetwatch_password "$out"/kafka_edge_password \
    "$out"/mqtt_edge_password "$out/postgres_passfile" "$out/evidence_link_secret" \
    "$out/review_session_secret" "$out"/evidence_token_*
fi
echo "make-secrets: wrote $out; paste $out/evidence-boxes.toml into docker/config/centre.toml"
