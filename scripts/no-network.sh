#!/usr/bin/env bash
# The core and the bindings must link no networking code: a keyboard model sees everything the
# user types, and nextword promises that none of it can leave the device through the SDK.
# Two checks: no networking crate among their normal (linked) dependencies, and no socket API
# in their own source. Build-only tools (uniffi-bindgen, the CLI, benches) are not shipped in
# apps and are not checked.
set -euo pipefail
cd "$(dirname "$0")/.."

# Crates whose purpose is network I/O (clients, servers, sockets, TLS, async networking).
DENY='^(reqwest|hyper|hyper-util|h2|h3|ureq|curl|curl-sys|isahc|attohttpc|surf|http-client|tokio|mio|socket2|async-std|smol|async-net|async-io|rustls|native-tls|openssl|openssl-sys|tokio-rustls|tungstenite|tokio-tungstenite|websocket|tonic|quinn|trust-dns-resolver|hickory-resolver|hf-hub|libp2p|ssh2|lettre|ftp|suppaftp|zmq|nng|paho-mqtt|rumqttc)$'

status=0
for crate in nextword-core nextword-ffi; do
  if ! cargo metadata --format-version 1 --no-deps | grep -q "\"name\":\"$crate\""; then
    echo "no-network: $crate is not in the workspace, skipped"
    continue
  fi
  deps=$(cargo tree -p "$crate" -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u)
  hits=$(grep -E "$DENY" <<<"$deps" || true)
  if [ -n "$hits" ]; then
    echo "no-network: $crate links networking crates:"; echo "$hits" | sed 's/^/  /'
    status=1
  else
    echo "no-network: $crate: $(wc -l <<<"$deps") linked crates, none of them networking"
  fi
done

# Our own code: no sockets, no HTTP.
if grep -rnE 'std::net|TcpStream|TcpListener|UdpSocket|UnixStream|UnixListener|ToSocketAddrs' \
    rust-core/src bindings/src 2>/dev/null; then
  echo "no-network: socket API used in rust-core/src or bindings/src (above)"
  status=1
else
  echo "no-network: no socket API in rust-core/src or bindings/src"
fi
exit $status
