# syntax=docker/dockerfile:1
# weir's container image: the same crate, Cargo.lock and default features the tests build, in the
# release profile, on a distroless base (glibc and CA certificates; no shell, no package manager).
#
#   docker build -t REGISTRY/weir:0.1.0 .
#
# The Helm chart runs it as `weir run ...` (its args replace CMD), as uid/gid 65532 with a
# read-only root filesystem.

FROM rust:1.95.0-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: a source edit does not rebuild them. The stubs stand in
# for every target Cargo.toml names (Cargo refuses a manifest whose targets are missing); the
# bench names are read from Cargo.toml's [[bench]] tables.
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && for bench in $(awk '/^\[\[bench\]\]/ { getline; gsub(/name = |"/, ""); print }' Cargo.toml); do \
      echo 'fn main() {}' > "benches/$bench.rs"; \
    done \
 && cargo build --release --locked \
 && rm -rf src benches
# The crate itself (touched so Cargo does not take the stubs' build for it).
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin weir \
 && cp target/release/weir /weir

# uid 65532 is distroless's "nonroot"; weir listens on 8080, 8443 and 9901 (no privileged port).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /weir /weir
USER 65532:65532
EXPOSE 8080 8443 9901
ENTRYPOINT ["/weir"]
# The in-cluster controller; `docker run IMAGE serve --config FILE` serves a file instead.
CMD ["run"]
