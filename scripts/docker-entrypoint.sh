#!/bin/sh
# The image's entry point (after tini) and its health check's: where the container keeps its files. An env file
# made from .env.example (`docker run --env-file .env`, compose's env_file) sets these variables to empty
# strings, which would hide values given with ENV; an empty or unset one gets the container's path here.
: "${MODELS_DIR:=/app/models}" "${EMBEDDINGS_DIR:=/app/embeddings}" "${DATA_DIR:=/app/data}" "${HEALTH_FILE:=/tmp/imagine-bot.health}"
export MODELS_DIR EMBEDDINGS_DIR DATA_DIR HEALTH_FILE
exec "$@"
