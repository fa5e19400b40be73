# musc-serve container. Build and runtime stages both use scripts/install-deps.sh, the dependency
# list CI uses, so the image cannot drift from what is tested. (No Docker engine exists on the
# development machines: this file is not built in CI; issue 6 adds its checks.)
FROM debian:bookworm-slim AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMUSC_BUILD_TESTS=OFF -DMUSC_BUILD_BENCH=OFF \
 && cmake --build build -j"$(nproc)" --target musc-server musc-client musc-synth

FROM debian:bookworm-slim AS runtime
COPY scripts/install-deps.sh /opt/musc/install-deps.sh
RUN /opt/musc/install-deps.sh --runtime && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/musc --create-home musc
COPY --from=build /src/build/bin/ /opt/musc/bin/
# The default products need no weights; mount a real products file over it.
COPY deploy/products.offline.yaml /etc/musc/products.yaml
USER musc
WORKDIR /var/lib/musc
EXPOSE 50051
# Weights are mounted (e.g. at /models) and named by the products file, mounted over
# /etc/musc/products.yaml.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s \
  CMD ["/opt/musc/bin/musc-client", "--server", "127.0.0.1:50051", "health"]
ENTRYPOINT ["/opt/musc/bin/musc-server", "--products", "/etc/musc/products.yaml", \
            "--listen", "0.0.0.0:50051"]
