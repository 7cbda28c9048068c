#!/bin/sh
# An image's entrypoint script: render the configuration, then hand over
# to the server (`exec`), as most official images do.
set -e
mkdir -p /tmp/app
echo "listen: 127.0.0.1:8080" > /tmp/app/config.yaml
exec "$@"
