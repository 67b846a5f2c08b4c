# triage: build the `triage` binary and ship it with its models and ONNX Runtime.
#
#   docker build -t triage .
#   docker compose up          # Kafka + topics + triage, see docker-compose.yml and docs/kafka.md
#
# Works with the classic builder and with BuildKit (no cache mounts), for amd64 and arm64.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder

# python3-pip: only to fetch the ONNX Runtime library out of its PyPI wheel (Debian ships none).
# The bundled librdkafka is built from source by rdkafka-sys (make, gcc, zlib: all in this image).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip \
 && rm -rf /var/lib/apt/lists/*

# ONNX Runtime 1.31.1 (what ort 2.0.0-rc.15 with api-31 expects). --target keeps it out of the
# system Python (no PEP 668 complaint) and nothing of the wheel but the library is used.
ARG ORT_VERSION=1.31.1
RUN python3 -m pip install --no-cache-dir --no-deps --only-binary=:all: \
        --target /opt/ort-wheel "onnxruntime==${ORT_VERSION}" \
 && mkdir -p /out/lib \
 && cp "/opt/ort-wheel/onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}" /out/lib/ \
 && rm -rf /opt/ort-wheel

WORKDIR /src
COPY . .
# models/: keep the model files, drop the Rust crate that lives beside them.
RUN cargo build --release --locked -p triage \
 && cp target/release/triage /out/triage \
 && mkdir -p /out/models \
 && cp -r models/. /out/models/ \
 && rm -rf /out/models/src /out/models/tests /out/models/examples /out/models/benches \
           /out/models/Cargo.toml

# ---------------------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

ARG ORT_VERSION=1.31.1
# libstdc++6: ONNX Runtime is C++. ca-certificates: harmless, and needed if TLS is ever enabled.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libstdc++6 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 triage \
 && useradd --system --uid 10001 --gid triage --home-dir /nonexistent --shell /usr/sbin/nologin triage

COPY --from=builder /out/triage /usr/local/bin/triage
COPY --from=builder /out/lib/ /opt/triage/lib/
COPY --from=builder /out/models/ /opt/triage/models/

# Relative model paths in the config resolve against the WORKDIR: models/default/... works.
ENV ORT_DYLIB_PATH=/opt/triage/lib/libonnxruntime.so.${ORT_VERSION} \
    RUST_LOG=info

USER triage:triage
WORKDIR /opt/triage
ENTRYPOINT ["/usr/local/bin/triage"]
CMD ["run", "--config", "/etc/triage/triage.toml"]
