# The replog host, statically linked (x86_64-unknown-linux-musl): no shell, no libc, no curl,
# and the master and secondary components it was built with, so that an orchestrator's
# machines (Swarm, Kubernetes) run the image alone. The Compose file mounts a components
# folder over /components instead, so that a new build is swapped in without a new image.
#
# Build the binary first (from the repository root; it builds the components too):
#   cargo build --release --target x86_64-unknown-linux-musl
FROM scratch
COPY target/x86_64-unknown-linux-musl/release/replog /replog
# Readable by the unprivileged user below whatever mode the build gave them.
COPY --chown=65534:65534 target/components/wasm32-wasip2/release/replog_master.wasm \
    target/components/wasm32-wasip2/release/replog_secondary.wasm /components/
ENV REPLOG_COMPONENTS=/components
# The log lives in /data (DATA_DIR). A named volume mounted there starts with the image's
# contents and ownership, so this makes it writable for the unprivileged user below.
COPY --chown=65534:65534 host/image/data /data
USER 65534:65534
EXPOSE 8000 8001
ENTRYPOINT ["/replog"]
CMD ["--help"]
