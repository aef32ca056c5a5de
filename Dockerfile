# The pipeline as one image for every role: ROLE=all (default), api, sensors or processors.
# Dependencies are fetched at build time from deno.lock; the program starts with --cached-only,
# so a container needs no network but its Kafka and MongoDB. Build and run:
#   docker build -t iot-pipeline .
#   docker run --rm -p 127.0.0.1:8080:8080 -e API_TOKEN="$(openssl rand -hex 24)" iot-pipeline
# Same Deno as CI (.ci/run); the tag pins the version, add @sha256:<digest> to pin the bytes.
FROM denoland/deno:2.9.6

# The image already has the unprivileged user "deno" (uid 1993) and DENO_DIR=/deno-dir.
# It is named by number below so Kubernetes' runAsNonRoot can verify it.
WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when deno.json or deno.lock changes.
# --frozen fails the build if the lock file is out of date instead of resolving anew.
COPY deno.json deno.lock ./
RUN deno install --frozen

# The program itself (.dockerignore keeps tests, harnesses and docs out), owned by root and
# read-only for the user that runs it. Caching main.ts proves every import resolves offline.
COPY . .
RUN deno cache --frozen main.ts \
  && mkdir data \
  && chown 1993:1993 data

USER 1993:1993
# Listen on every interface inside the container; the config check still refuses to start
# without API_TOKEN there (or an explicit ALLOW_OPEN=true).
ENV HOST=0.0.0.0 \
  PORT=8080 \
  DENO_NO_UPDATE_CHECK=1
EXPOSE 8080

# Liveness only: /livez never looks at Kafka or MongoDB, so a broker outage does not mark the
# container unhealthy (readiness is /readyz). curl is not in the image; deno is.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["deno", "eval", "--no-config", "const r = await fetch(`http://127.0.0.1:${Deno.env.get('PORT') ?? 8080}/livez`); Deno.exit(r.ok ? 0 : 1)"]

# The permissions of `deno task start`; writes only to data/ (the embedded store, unused with
# MONGO_URL). Flags after the image name go to the program: docker run iot-pipeline --role api
ENTRYPOINT ["deno", "run", "--cached-only", "--frozen", "--allow-net", "--allow-env", "--allow-read", "--allow-write=data", "--allow-sys", "main.ts"]
CMD []
