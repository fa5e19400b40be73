# musc-serve container. Build and runtime stages both use scripts/install-deps.sh, the dependency
# list CI uses, so the image cannot drift from what is tested.
FROM debian:bookworm-slim AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMUSC_BUILD_TESTS=OFF \
 && cmake --build build -j"$(nproc)" --target musc-bench

FROM debian:bookworm-slim AS runtime
COPY scripts/install-deps.sh /opt/musc/install-deps.sh
RUN /opt/musc/install-deps.sh --runtime && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/musc --create-home musc
COPY --from=build /src/build/bin/ /opt/musc/bin/
USER musc
WORKDIR /var/lib/musc
# The gRPC server (and its HEALTHCHECK) replaces this entry point when it lands.
ENTRYPOINT ["/opt/musc/bin/musc-bench"]
