#!/bin/sh
# Makes what `xdream serve` needs beyond loopback, once, in the folder $1 (default /keys):
# the HTTP access token, the server's CURVE key pair, and a key pair for one rig client
# ($2, default "simulator") whose public key goes into clients/. Existing files are kept.
set -eu
keys="${1:-/keys}"
client="${2:-simulator}"
mkdir -p "$keys/clients" "$keys/$client"
[ -f "$keys/http-token" ] || xdream token "$keys/http-token"
[ -f "$keys/server.key_secret" ] || xdream keys "$keys" --name server
if [ ! -f "$keys/$client/$client.key_secret" ]; then
    xdream keys "$keys/$client" --name "$client"
    cp "$keys/$client/$client.key" "$keys/clients/$client.key"
fi
echo "keys ready in $keys"
