# syntax=docker/dockerfile:1
# Multi-stage build of the same binary the tests build (same crate, same features, release profile).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: source edits do not rebuild them.
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY src ./src
COPY crds ./crds
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin weir

# distroless: CA certificates, no shell, no package manager; uid 65532 is "nonroot".
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/weir /weir
USER 65532:65532
EXPOSE 8080 8443 9901
ENTRYPOINT ["/weir"]
# `weir run` (the in-cluster controller) arrives with issue #7; until then the image serves a file.
CMD ["serve", "--config", "/etc/weir/pools.yaml"]
