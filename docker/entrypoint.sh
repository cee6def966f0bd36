#!/bin/sh
# The image's own service (SERVICE, fixed when the image was built); arguments pass through,
# e.g. `--help` for its settings. The cli image runs the `poise` command instead.
set -e
if [ "${SERVICE}" = cli ]; then
    exec poise "$@"
fi
exec python -m "poise_${SERVICE}" "$@"
