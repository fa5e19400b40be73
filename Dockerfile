# syntax=docker/dockerfile:1.7
# musc-serve container (CPU). docs/DEPLOYMENT.md explains how to run it; Dockerfile.cuda is the
# CUDA LibTorch variant.
#
# Both stages install their packages with scripts/install-deps.sh, the one dependency list that
# the README, CI and this file share, so the image cannot drift from what is tested. Build
# context exclusions: Dockerfile.dockerignore (BuildKit reads it instead of .dockerignore).
#
# No Docker engine exists on the development machines: this file is not built in CI. Its static
# checks (stage names, pinned bases, non-root user, health check, apt hygiene, paths that COPY
# reads) run offline: tests/deploy/dockerfile_check.mjs.

# Debian 12, the release install-deps.sh pins its package names to. For byte-for-byte
# reproducible builds pass a digest: --build-arg DEBIAN_IMAGE=debian:bookworm-slim@sha256:...
ARG DEBIAN_IMAGE=debian:bookworm-slim

# --- build: compilers, -dev packages, the whole source tree -------------------------------------
FROM ${DEBIAN_IMAGE} AS build
ARG DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# install-deps.sh alone first: its layer is reused until the dependency list changes.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
# Only the shipped binaries: no tests, no benchmarks. -j2 keeps the memory of LibTorch
# translation units (~1.5 GB each) within a small builder; raise it with --build-arg JOBS=N.
ARG JOBS=2
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DMUSC_BUILD_TESTS=OFF -DMUSC_BUILD_BENCH=OFF \
 && cmake --build build -j"${JOBS}" --target musc-server musc-client musc-synth

# --- runtime: shared libraries only, non-root --------------------------------------------------
FROM ${DEBIAN_IMAGE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="musc-serve" \
      org.opencontainers.image.description="MuSc zero-shot anomaly detection as a gRPC service" \
      org.opencontainers.image.version="${VERSION}"
COPY scripts/install-deps.sh /opt/musc/scripts/install-deps.sh
# curl: scripts/fetch-weights.sh downloads weights with it when MUSC_FETCH_WEIGHTS asks.
# uid/gid 10001, numeric below, so that Kubernetes' runAsNonRoot can verify it.
RUN /opt/musc/scripts/install-deps.sh --runtime \
 && apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 musc \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/musc --create-home musc \
 && mkdir -p /models /etc/musc \
 && chown 10001:10001 /models
COPY --from=build /src/build/bin/musc-server /src/build/bin/musc-client /src/build/bin/musc-synth \
     /opt/musc/bin/
# fetch-weights.sh finds its registry at ../core/models.tsv, as in the repository.
COPY scripts/fetch-weights.sh /opt/musc/scripts/fetch-weights.sh
COPY core/models.tsv /opt/musc/core/models.tsv
COPY --chmod=0755 deploy/docker/entrypoint.sh /opt/musc/bin/entrypoint.sh
# The default products need no weights; mount a real products file over it
# (deploy/docker/products.yaml names weights under /models).
COPY deploy/products.offline.yaml /etc/musc/products.yaml
ENV PATH=/opt/musc/bin:$PATH \
    MUSC_WEIGHTS_DIR=/models \
    MUSC_WEIGHTS_MIRROR=/models-mirror \
    MUSC_FETCH_WEIGHTS=""
USER 10001:10001
WORKDIR /var/lib/musc
# 50051: gRPC (API, health, reflection). 9464: Prometheus /metrics.
EXPOSE 50051 9464
# The standard gRPC health service: NOT_SERVING until the backbones are loaded and while the
# server drains after SIGTERM. Loading takes minutes for large backbones, hence the start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["/opt/musc/bin/musc-client", "--server", "127.0.0.1:50051", "health"]
# SIGTERM makes the server drain for --shutdown_grace seconds (60 by default): stop it with a
# longer timeout (docker stop -t 75; docker-compose.yml sets stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/musc/bin/entrypoint.sh"]
CMD ["--products", "/etc/musc/products.yaml", "--listen", "0.0.0.0:50051", \
     "--metrics_listen", "0.0.0.0:9464"]
